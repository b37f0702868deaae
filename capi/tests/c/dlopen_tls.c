/*
 * dlopen/dlclose of modules with TLS while the preloaded allocator runs.
 *
 *   dlopen_tls DIR N     DIR/tlsmod0.so ... DIR/tlsmod<N-1>.so, built from
 *                        tls_module.c (see tests/preload.rs)
 *
 * Four threads each load a module 200 times, keeping up to WINDOW modules
 * open at once (so, across the threads, more TLS modules than glibc's DTV
 * has room for at start and it must grow), touch its TLS through its
 * functions, allocate and free in between, and close the oldest module.
 * Every TLS access of a module goes through __tls_get_addr; after another
 * thread's dlopen or dlclose, glibc (before 2.40) updates the thread's DTV
 * inside that call, with malloc and free: allocating the DTV and the
 * module's TLS block, freeing those of unloaded modules. Those calls land in
 * the allocator under test while glibc is in the middle of the update; the
 * allocator must then not need __tls_get_addr itself.
 *
 * Checks: the .tdata image and the TLS pattern of every open module survive
 * the other threads' loads and unloads, the module's TLS never lies inside
 * a live block of ours, every block keeps its contents. Prints which library
 * `malloc` comes from, and "dlopen_tls: all ok" on success (exit 0).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { THREADS = 4, LOADS = 200, WINDOW = 6, MAX_MODULES = 64 };

static atomic_long loads;
static const char *dir;
static int modules;
static pthread_barrier_t start;


static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

typedef int (*id_fn)(void);
typedef void *(*fill_fn)(unsigned);
typedef long (*check_fn)(unsigned, int);

struct open_module {
    void *handle;
    int id;
    unsigned seed;
    check_fn check;
};

/* A block of `size` bytes with a pattern of `seed`. */
static unsigned char *make(size_t size, unsigned seed) {
    unsigned char *p = malloc(size);
    if (!p) {
        CHECK(!"malloc failed");
        abort();
    }
    for (size_t i = 0; i < size; i++)
        p[i] = (unsigned char)(seed + 3 * i);
    return p;
}

static void verify_free(unsigned char *p, size_t size, unsigned seed) {
    int ok = 1;
    for (size_t i = 0; i < size && ok; i++)
        ok = p[i] == (unsigned char)(seed + 3 * i);
    CHECK(ok);
    free(p);
}

static int is_open(const struct open_module *w, int n, int id) {
    for (int k = 0; k < n; k++)
        if (w[k].id == id)
            return 1;
    return 0;
}

static void close_oldest(struct open_module *w, int *n) {
    CHECK(w[0].check(w[0].seed, 1) == 0);
    CHECK(dlclose(w[0].handle) == 0);
    memmove(w, w + 1, (size_t)(*n - 1) * sizeof *w);
    (*n)--;
}

static void *worker(void *arg) {
    uintptr_t t = (uintptr_t)arg;
    uint64_t rng = 0x9E3779B97F4A7C15ull * (t + 1);
    struct open_module window[WINDOW];
    int open = 0;
    char path[4096];
    pthread_barrier_wait(&start);
    for (int i = 0; i < LOADS; i++) {
        /* A module this thread does not hold open already (its TLS in this
         * thread would be shared with the open instance). */
        int id = (int)(next_rand(&rng) % (uint64_t)modules);
        while (is_open(window, open, id))
            id = (id + 1) % modules;
        snprintf(path, sizeof path, "%s/tlsmod%d.so", dir, id);

        size_t size = 16 + (size_t)(next_rand(&rng) % 2000);
        unsigned seed = (unsigned)next_rand(&rng);
        unsigned char *before = make(size, seed);

        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
            CHECK(!"dlopen failed");
            abort();
        }
        id_fn module_id = (id_fn)dlsym(h, "tls_module_id");
        fill_fn fill = (fill_fn)dlsym(h, "tls_fill");
        check_fn check = (check_fn)dlsym(h, "tls_check");
        CHECK(module_id && fill && check);
        CHECK(module_id() == id);

        unsigned char *tls = fill(seed);
        CHECK(tls != NULL); /* .tdata image intact, nothing held from before */
        /* The module's TLS block and our block are distinct memory. */
        CHECK(tls + 1 <= before || tls >= before + size);

        unsigned char *between = make(size / 2 + 1, seed + 1);
        CHECK(check(seed, 0) == 0);
        verify_free(before, size, seed);
        verify_free(between, size / 2 + 1, seed + 1);

        window[open++] = (struct open_module){h, id, seed, check};
        if (open == WINDOW)
            close_oldest(window, &open);
        /* Re-check the modules still open: other threads' loads and
         * unloads must not have disturbed their TLS in this thread. */
        for (int k = 0; k < open; k++)
            CHECK(window[k].check(window[k].seed, 0) == 0);
        atomic_fetch_add(&loads, 1);
    }
    while (open > 0)
        close_oldest(window, &open);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s DIR N\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    modules = atoi(argv[2]);
    if (modules <= WINDOW || modules > MAX_MODULES) {
        fprintf(stderr, "N must be in %d..=%d\n", WINDOW + 1, MAX_MODULES);
        return 2;
    }

    Dl_info info;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    if (m && dladdr(m, &info) && info.dli_fname)
        printf("dlopen_tls: malloc from %s\n", info.dli_fname);

    pthread_barrier_init(&start, NULL, THREADS);
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    pthread_barrier_destroy(&start);

    if (failures) {
        fprintf(stderr, "dlopen_tls: %d check(s) failed\n", failures);
        return 1;
    }
    printf("dlopen_tls: %ld loads in %d threads, all ok\n", (long)loads,
           THREADS);
    return 0;
}
