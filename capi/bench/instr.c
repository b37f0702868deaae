/* Allocator operations in a loop, for instruction counting under callgrind
 * (capi/bench/instructions.sh). The allocator is whichever malloc the dynamic
 * linker binds: glibc's, or one given with LD_PRELOAD.
 *
 *   instr OP N      OP: pair | mixed | calloc | realloc; N iterations
 *
 * Prints "OP N OPS_PER_ITERATION FILE" so the caller can divide by the number
 * of counted operations and check which object malloc is bound to (FILE, as
 * dladdr names the object that holds malloc, free, calloc and realloc, or
 * "mixed" if they are not all in one). Everything outside the loop is the same for every N, so
 * the difference of two runs' totals is the loop alone.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Make the pointer observable so the compiler cannot drop a malloc/free pair. */
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")

#define BATCH 64
#define REALLOC_LIMIT (64 * 1024)

/* 1. malloc(32) / free. */
static long op_pair(long n) {
    for (long i = 0; i < n; i++) {
        void *p = malloc(32);
        ESCAPE(p);
        free(p);
    }
    return 1;
}

/* 2. 64 blocks of sizes 16, 32, ..., 1024 (each once, in the order of
 *    (37 k) mod 64), freed in the order (29 k + 11) mod 64. */
static long op_mixed(long n) {
    static size_t size[BATCH];
    static int free_order[BATCH];
    void *blk[BATCH];
    for (int k = 0; k < BATCH; k++) {
        size[k] = 16 * (size_t)(1 + (37 * k) % BATCH);
        free_order[k] = (29 * k + 11) % BATCH;
    }
    for (long i = 0; i < n; i++) {
        for (int k = 0; k < BATCH; k++) {
            blk[k] = malloc(size[k]);
            ESCAPE(blk[k]);
        }
        for (int k = 0; k < BATCH; k++)
            free(blk[free_order[k]]);
    }
    return BATCH;
}

/* 3. calloc(1, 256) / free. */
static long op_calloc(long n) {
    for (long i = 0; i < n; i++) {
        void *p = calloc(1, 256);
        ESCAPE(p);
        free(p);
    }
    return 1;
}

/* 4. malloc(16), then realloc to 1.5 x the size until 64 KiB, then free.
 *    Counted per realloc; the malloc and free are spread over them. */
static long op_realloc(long n) {
    long reallocs = 0;
    for (long i = 0; i < n; i++) {
        size_t sz = 16;
        char *p = malloc(sz);
        ESCAPE(p);
        reallocs = 0;
        while (sz < REALLOC_LIMIT) {
            sz = sz * 3 / 2;
            if (sz > REALLOC_LIMIT)
                sz = REALLOC_LIMIT;
            p = realloc(p, sz);
            ESCAPE(p);
            reallocs++;
        }
        free(p);
    }
    return reallocs;
}

/* The object that holds all four functions the loops call. */
static const char *allocator_object(void) {
    void *fns[] = {(void *)malloc, (void *)free, (void *)calloc, (void *)realloc};
    const char *name = NULL;
    for (int k = 0; k < 4; k++) {
        Dl_info info;
        if (!dladdr(fns[k], &info) || !info.dli_fname)
            return "unknown";
        if (name && strcmp(name, info.dli_fname) != 0)
            return "mixed";
        name = info.dli_fname;
    }
    return name;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s pair|mixed|calloc|realloc N\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[2], NULL, 10);
    long per;
    if (strcmp(argv[1], "pair") == 0)
        per = op_pair(n);
    else if (strcmp(argv[1], "mixed") == 0)
        per = op_mixed(n);
    else if (strcmp(argv[1], "calloc") == 0)
        per = op_calloc(n);
    else if (strcmp(argv[1], "realloc") == 0)
        per = op_realloc(n);
    else {
        fprintf(stderr, "unknown operation %s\n", argv[1]);
        return 2;
    }
    printf("%s %ld %ld %s\n", argv[1], n, per, allocator_object());
    return 0;
}
