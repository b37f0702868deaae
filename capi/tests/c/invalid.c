/*
 * Misuse that libshoalloc.so must detect: each mode passes a pointer that
 * shoalloc did not hand out, or frees a block twice. The process must die
 * with SIGABRT after printing "shoalloc: <function>(0x...): invalid pointer
 * ..." (or, for an immediate double free of a small block, "shoalloc: double
 * free ...") on stderr. Returning from main (exit 0) is the failure.
 *
 * The modes after the first group are what only libshoalloc_secure.so
 * detects (a delayed or cross-thread double free, a write into a freed
 * block's link, an overflow into a free block); libshoalloc.so is not run
 * with them.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *__libc_malloc(size_t size); /* glibc's own malloc, bypassing ours */

static char static_buf[256];

/* Where results of malloc go that are not used otherwise. */
static void *volatile sink;

static void *free_in_thread(void *p) {
    free(p);
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    char stack_buf[64];
    void *volatile p;
    if (strcmp(mode, "free-static") == 0) {
        p = static_buf + 16;
        free(p);
    } else if (strcmp(mode, "free-stack") == 0) {
        p = stack_buf;
        free(p);
    } else if (strcmp(mode, "free-interior") == 0) {
        p = (char *)malloc(64) + 16;
        free(p);
    } else if (strcmp(mode, "free-glibc") == 0) {
        free(__libc_malloc(32));
    } else if (strcmp(mode, "double-free-small") == 0) {
        p = malloc(32);
        free(p);
        free(p);
    } else if (strcmp(mode, "double-free-large") == 0) {
        p = malloc(1 << 20);
        free(p);
        free(p);
    } else if (strcmp(mode, "realloc") == 0) {
        p = static_buf;
        p = realloc(p, 10);
    } else if (strcmp(mode, "malloc_usable_size") == 0) {
        p = static_buf;
        printf("%zu\n", malloc_usable_size(p));
    } else if (strcmp(mode, "double-free-delayed") == 0) {
        /* Through the volatile pointers, so no malloc/free pair is elided. */
        void *volatile q = malloc(32);
        void *volatile r;
        p = malloc(32);
        free(p);
        free(q);
        r = malloc(100);
        free(r);
        free(p);
    } else if (strcmp(mode, "double-free-thread") == 0) {
        pthread_t t;
        p = malloc(32);
        if (pthread_create(&t, NULL, free_in_thread, p) != 0 || pthread_join(t, NULL) != 0)
            return 2;
        free(p);
    } else if (strcmp(mode, "write-after-free") == 0) {
        void *volatile q = malloc(32);
        p = malloc(32);
        free(q);
        free(p);
        *(void **)p = stack_buf; /* the use-after-free write: a forged link */
        for (int i = 0; i < 4; i++) {
            sink = malloc(32); /* volatile: the compiler may not elide it */
            if (sink == (void *)stack_buf)
                printf("invalid: handed out the forged address\n");
        }
    } else if (strcmp(mode, "overflow-into-free") == 0) {
        /* Fresh blocks are carved in address order, so the block after p
         * is free; the overflow lands on its link. */
        p = malloc(48);
        memset((char *)p + 48, 0x41, 8);
        for (int i = 0; i < 256; i++)
            sink = malloc(48);
    } else {
        fprintf(stderr, "invalid: unknown mode '%s'\n", mode);
        return 2;
    }
    printf("invalid: survived '%s'\n", mode);
    return 0;
}
