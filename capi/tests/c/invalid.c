/*
 * Misuse that libshoalloc.so must detect: each mode passes a pointer that
 * shoalloc did not hand out, or frees a block twice. The process must die
 * with SIGABRT after printing "shoalloc: <function>(0x...): invalid pointer
 * ..." (or, for an immediate double free of a small block, "shoalloc: double
 * free ...") on stderr. Returning from main (exit 0) is the failure.
 *
 * The modes after the first group are what only libshoalloc_secure.so
 * detects (a delayed or cross-thread double free, a write into a freed
 * block's link, an overflow into a free block, a forged link) or stops on
 * a guard page (SIGSEGV: writes just below a segment's header and below
 * its first block); libshoalloc.so is expected to survive the forged link
 * and the guard-page writes, which land on bytes it does not use.
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
    } else if (strcmp(mode, "forged-link") == 0) {
        /* After free(q); free(p) the list is p -> q; p's link is rewritten
         * to q's address, a real free block of the class. Stored plain,
         * that is the value it held; encoded (secure), it decodes to
         * garbage and the allocation that follows it must abort. */
        void *volatile q = malloc(32);
        p = malloc(32);
        free(q);
        free(p);
        *(void *volatile *)p = q;
        sink = malloc(32);
        sink = malloc(32);
        if (sink != q)
            printf("invalid: the list was not p -> q\n");
    } else if (strcmp(mode, "write-below-segment-header") == 0 ||
               strcmp(mode, "write-below-first-block") == 0) {
        /* The guard pages of the secure library (DESIGN.md section 15):
         * the first page of each 4 MiB segment, and the page below its
         * first unit of blocks (unit 5 of 64 KiB units). */
        uintptr_t base = (uintptr_t)malloc(32) & ~(uintptr_t)((4 << 20) - 1);
        uintptr_t at = strcmp(mode, "write-below-segment-header") == 0 ? base : base + 5 * 65536 - 1;
        *(volatile char *)at = 0x41;
    } else {
        fprintf(stderr, "invalid: unknown mode '%s'\n", mode);
        return 2;
    }
    printf("invalid: survived '%s'\n", mode);
    return 0;
}
