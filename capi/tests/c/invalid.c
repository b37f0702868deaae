/*
 * Misuse that libshoalloc.so must detect: each mode passes a pointer that
 * shoalloc did not hand out, or frees a block twice. The process must die
 * with SIGABRT after printing "shoalloc: <function>(0x...): invalid pointer
 * ..." (or, for an immediate double free of a small block, "shoalloc: double
 * free ...") on stderr. Returning from main (exit 0) is the failure.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *__libc_malloc(size_t size); /* glibc's own malloc, bypassing ours */

static char static_buf[256];

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
    } else {
        fprintf(stderr, "invalid: unknown mode '%s'\n", mode);
        return 2;
    }
    printf("invalid: survived '%s'\n", mode);
    return 0;
}
