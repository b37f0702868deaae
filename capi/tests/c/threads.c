/*
 * Threads on libshoalloc.so: cross-thread frees through shared slots
 * (larson-style), blocks that outlive the thread that allocated them, and
 * thread churn (hundreds of short-lived threads, each cache returned at exit).
 * Every block carries its size and a seed, and is verified before it is freed.
 * Exits 0 and prints "threads: all ok".
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"



struct hdr {
    size_t size;
    uint32_t seed;
    uint32_t pad;
};

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t pick_size(uint64_t *rng) {
    uint64_t r = next_rand(rng);
    if (r % 200 == 0)
        return 262144 + r % 700000; /* a large object now and then */
    if (r % 20 == 0)
        return 1000 + r % 20000;
    return sizeof(struct hdr) + r % 1000;
}

/* A verified block of `size` bytes; allocated by malloc, calloc, realloc or
 * posix_memalign in turn. */
static struct hdr *make(size_t size, uint32_t seed, uint64_t *rng) {
    unsigned char *p;
    switch (next_rand(rng) % 4) {
    case 0:
        p = malloc(size);
        break;
    case 1:
        p = calloc(1, size);
        break;
    case 2:
        p = realloc(malloc(size / 2 + 1), size);
        break;
    default:
        if (posix_memalign((void **)&p, 64, size) != 0)
            p = NULL;
        break;
    }
    if (!p) {
        CHECK(!"allocation failed");
        abort();
    }
    struct hdr *h = (struct hdr *)p;
    h->size = size;
    h->seed = seed;
    for (size_t i = sizeof *h; i < size; i++)
        p[i] = (unsigned char)(seed + i);
    return h;
}

static void verify_free(struct hdr *h) {
    unsigned char *p = (unsigned char *)h;
    int ok = malloc_usable_size(p) >= h->size;
    for (size_t i = sizeof *h; i < h->size && ok; i++)
        ok = p[i] == (unsigned char)(h->seed + i);
    CHECK(ok);
    free(p);
}

/* ---- larson: threads swap blocks through shared slots ---- */
enum { SLOTS = 4096, ROUNDS = 60000, WORKERS = 4 };
static _Atomic(struct hdr *) slots[SLOTS];

static void *larson(void *arg) {
    uint64_t rng = 0x9E3779B97F4A7C15ull * (uintptr_t)arg + 1;
    for (int i = 0; i < ROUNDS; i++) {
        size_t s = (size_t)(next_rand(&rng) % SLOTS);
        struct hdr *fresh = make(pick_size(&rng), (uint32_t)next_rand(&rng), &rng);
        struct hdr *old = atomic_exchange(&slots[s], fresh);
        if (old)
            verify_free(old); /* usually another thread's block */
    }
    return NULL;
}

/* ---- churn: generations of short-lived threads ---- */
enum { GENERATIONS = 150, PER_GEN = 4, KEEP = 64 };
static struct hdr *handoff[PER_GEN][KEEP];

static void *churn(void *arg) {
    uintptr_t id = (uintptr_t)arg;
    uint64_t rng = 0x2545F4914F6CDD1Dull * (id + 7);
    int slot = (int)(id % PER_GEN);
    /* Free what the previous generation left, then leave blocks behind. */
    for (int k = 0; k < KEEP; k++) {
        if (handoff[slot][k])
            verify_free(handoff[slot][k]);
        handoff[slot][k] = make(pick_size(&rng), (uint32_t)id, &rng);
    }
    /* Some thread-local work, mostly freed before exit. */
    struct hdr *local[256];
    for (int k = 0; k < 256; k++)
        local[k] = make(16 + (size_t)(next_rand(&rng) % 600), (uint32_t)k, &rng);
    for (int k = 0; k < 256; k++)
        verify_free(local[k]);
    return NULL;
}

static long rss_kib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * 4;
}

int main(void) {
    pthread_t t[WORKERS];
    for (uintptr_t i = 0; i < WORKERS; i++)
        CHECK(pthread_create(&t[i], NULL, larson, (void *)(i + 1)) == 0);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    for (int s = 0; s < SLOTS; s++)
        if (slots[s])
            verify_free(slots[s]);
    printf("threads: larson done, rss %ld KiB\n", rss_kib());

    long rss_before_churn = rss_kib();
    for (uintptr_t g = 0; g < GENERATIONS; g++) {
        pthread_t c[PER_GEN];
        for (uintptr_t i = 0; i < PER_GEN; i++)
            CHECK(pthread_create(&c[i], NULL, churn, (void *)(g * PER_GEN + i)) == 0);
        for (int i = 0; i < PER_GEN; i++)
            pthread_join(c[i], NULL);
    }
    for (int s = 0; s < PER_GEN; s++)
        for (int k = 0; k < KEEP; k++)
            if (handoff[s][k])
                verify_free(handoff[s][k]);
    long rss_after = rss_kib();
    printf("threads: churn of %d threads done, rss %ld -> %ld KiB\n",
           GENERATIONS * PER_GEN, rss_before_churn, rss_after);
    /* Dead threads' caches go back to the pools: 600 threads must not each
     * strand their cached blocks (that would be hundreds of MiB). */
    CHECK(rss_after - rss_before_churn < 64 * 1024);

    if (failures) {
        fprintf(stderr, "threads: %d check(s) failed\n", failures);
        return 1;
    }
    printf("threads: all ok\n");
    return 0;
}
