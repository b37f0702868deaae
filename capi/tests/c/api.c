/*
 * Every exported function of libshoalloc.so and its C error answers.
 * Run with LD_PRELOAD=libshoalloc.so; exits 0 and prints "api: all ok".
 * Exits 2 when malloc is not shoalloc's (so a missing preload cannot pass).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* Call through volatile function pointers so the compiler cannot fold
 * impossible requests (gcc knows malloc(SIZE_MAX) "returns NULL"). */
static void *(*volatile p_malloc)(size_t) = malloc;
static void *(*volatile p_calloc)(size_t, size_t) = calloc;
static void *(*volatile p_realloc)(void *, size_t) = realloc;
static void *(*volatile p_aligned_alloc)(size_t, size_t) = aligned_alloc;
static void *(*volatile p_memalign)(size_t, size_t) = memalign;
static void *(*volatile p_reallocarray)(void *, size_t, size_t) = reallocarray;
static void *(*volatile p_valloc)(size_t) = valloc;
static void *(*volatile p_pvalloc)(size_t) = pvalloc;

static int aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 7);
}

static int check_fill(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7))
            return 0;
    return 1;
}

static void require_shoalloc(void) {
    Dl_info info;
    void *sym = dlsym(RTLD_DEFAULT, "malloc");
    if (!sym || !dladdr(sym, &info) || !info.dli_fname ||
        !strstr(info.dli_fname, "libshoalloc")) {
        fprintf(stderr, "api: malloc comes from %s, not libshoalloc\n",
                sym && dladdr(sym, &info) ? info.dli_fname : "?");
        exit(2);
    }
    printf("api: malloc from %s\n", info.dli_fname);
}

static void test_malloc_free(void) {
    void *a = malloc(0), *b = malloc(0);
    CHECK(a && b && a != b);
    CHECK(aligned(a, 16) && aligned(b, 16));
    free(a);
    free(b);
    free(NULL);
    /* glibc keeps cfree only as a compat symbol new programs cannot link
     * against; look ours up by name. */
    void (*cfree_fn)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "cfree");
    Dl_info info;
    CHECK(cfree_fn && dladdr((void *)cfree_fn, &info) && strstr(info.dli_fname, "libshoalloc"));
    if (cfree_fn) {
        cfree_fn(NULL);
        cfree_fn(malloc(10));
    }

    static const size_t sizes[] = {1, 8, 15, 16, 17, 100, 128, 129, 1000, 4096,
                                   5000, 65536, 200000, 262144, 262145,
                                   1 << 20, 5 << 20, 33 << 20};
    void *ptrs[sizeof sizes / sizeof sizes[0]];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ptrs[i] = malloc(sizes[i]);
        CHECK(ptrs[i] && aligned(ptrs[i], 16));
        size_t u = malloc_usable_size(ptrs[i]);
        CHECK(u >= sizes[i]);
        fill(ptrs[i], u, (unsigned)i); /* all of the usable size is writable */
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        CHECK(check_fill(ptrs[i], malloc_usable_size(ptrs[i]), (unsigned)i));
        free(ptrs[i]);
    }

    errno = 0;
    CHECK(p_malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(p_malloc((size_t)PTRDIFF_MAX + 1) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(p_malloc(SIZE_MAX - 4095) == NULL && errno == ENOMEM);
    CHECK(malloc_usable_size(NULL) == 0);
}

static void test_calloc(void) {
    /* Dirty memory first so that recycled blocks are not zero by luck. */
    static const size_t sizes[] = {1, 24, 100, 4000, 100000, 300000, 3 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (int r = 0; r < 3; r++) {
            unsigned char *d = malloc(sizes[i]);
            memset(d, 0xAB, malloc_usable_size(d));
            free(d);
            unsigned char *z = calloc(1, sizes[i]);
            CHECK(z != NULL);
            int zero = 1;
            for (size_t k = 0; k < sizes[i]; k++)
                zero &= z[k] == 0;
            CHECK(zero);
            free(z);
        }
    }
    void *z0 = calloc(0, 0), *z1 = calloc(0, 8), *z2 = calloc(8, 0);
    CHECK(z0 && z1 && z2 && z0 != z1 && z1 != z2);
    free(z0);
    free(z1);
    free(z2);
    errno = 0;
    CHECK(p_calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(p_calloc((size_t)1 << 33, (size_t)1 << 33) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(p_calloc(1, SIZE_MAX) == NULL && errno == ENOMEM);
    int *arr = calloc(1000, sizeof(int));
    CHECK(arr && arr[999] == 0);
    free(arr);
}

static void test_realloc(void) {
    /* realloc(NULL, n) is malloc(n). */
    unsigned char *p = p_realloc(NULL, 40);
    CHECK(p && malloc_usable_size(p) >= 40);
    fill(p, 40, 1);
    /* Same class: in place. */
    unsigned char *q = p_realloc(p, 44);
    CHECK(q == p);
    p = q;
    /* Grow through small classes into large objects and back, keeping data. */
    size_t len = 40;
    static const size_t steps[] = {100, 1000, 10000, 100000, 262144, 300000,
                                   2 << 20, 9 << 20, 300000, 5000, 64, 17};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t keep = len < steps[i] ? len : steps[i];
        q = p_realloc(p, steps[i]);
        CHECK(q && aligned(q, 16));
        CHECK(check_fill(q, keep, 1));
        CHECK(malloc_usable_size(q) >= steps[i]);
        fill(q, steps[i], 1);
        p = q;
        len = steps[i];
    }
    /* A large object shrunk a little stays in place. */
    unsigned char *big = malloc(8 << 20);
    fill(big, 8 << 20, 3);
    q = p_realloc(big, (8 << 20) - 100000);
    CHECK(q == big && check_fill(q, (8 << 20) - 100000, 3));
    big = q;

    /* A failed realloc leaves the block intact. */
    errno = 0;
    CHECK(p_realloc(p, SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(p_realloc(big, (size_t)PTRDIFF_MAX + 1) == NULL && errno == ENOMEM);
    CHECK(check_fill(p, len, 1));
    CHECK(check_fill(big, (8 << 20) - 100000, 3));
    free(big);

    /* realloc(p, 0) frees p and returns NULL (glibc), errno untouched. */
    errno = 1234;
    CHECK(p_realloc(p, 0) == NULL);
    CHECK(errno == 1234);

    /* A 4096-aligned block reallocated keeps its bytes (alignment 16). */
    void *al = NULL;
    CHECK(posix_memalign(&al, 4096, 100) == 0 && aligned(al, 4096));
    fill(al, 100, 9);
    q = p_realloc(al, 5000);
    CHECK(q && aligned(q, 16) && check_fill(q, 100, 9));
    free(q);
    /* Over-aligned large object: shrink and grow keep the data. */
    CHECK(posix_memalign(&al, 1 << 22, 10000) == 0 && aligned(al, 1 << 22));
    fill(al, 10000, 5);
    q = p_realloc(al, 20);
    CHECK(q && check_fill(q, 20, 5));
    free(q);

    /* reallocarray */
    int *arr = reallocarray(NULL, 10, sizeof(int));
    CHECK(arr != NULL);
    for (int i = 0; i < 10; i++)
        arr[i] = i;
    int *arr2 = reallocarray(arr, 1000, sizeof(int));
    CHECK(arr2 && arr2[9] == 9);
    errno = 0;
    CHECK(p_reallocarray(arr2, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
    CHECK(arr2[5] == 5); /* untouched on failure */
    CHECK(p_reallocarray(arr2, 0, 4) == NULL); /* frees, as realloc(p, 0) */
}

static void test_posix_memalign(void) {
    void *sentinel = (void *)0x1234, *p = sentinel;
    CHECK(posix_memalign(&p, 0, 16) == EINVAL && p == sentinel);
    CHECK(posix_memalign(&p, 3, 16) == EINVAL && p == sentinel);
    CHECK(posix_memalign(&p, 4, 16) == EINVAL && p == sentinel); /* < sizeof(void*) */
    CHECK(posix_memalign(&p, 24, 16) == EINVAL && p == sentinel);
    CHECK(posix_memalign(&p, 16, SIZE_MAX) == ENOMEM && p == sentinel);
    CHECK(posix_memalign(&p, 1 << 20, SIZE_MAX - (1 << 19)) == ENOMEM && p == sentinel);
    CHECK(posix_memalign(&p, (size_t)1 << 62, 16) == ENOMEM && p == sentinel);
    for (size_t a = sizeof(void *); a <= (size_t)1 << 24; a <<= 1) {
        static const size_t sizes[] = {0, 1, 100, 4096, 70000, 300000};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *m = NULL;
            CHECK(posix_memalign(&m, a, sizes[i]) == 0);
            CHECK(m && aligned(m, a));
            CHECK(malloc_usable_size(m) >= sizes[i]);
            memset(m, 0x5A, malloc_usable_size(m));
            free(m);
        }
    }
}

static void test_aligned_alloc_memalign(void) {
    void *(*fns[2])(size_t, size_t) = {p_aligned_alloc, p_memalign};
    for (int f = 0; f < 2; f++) {
        static const size_t bad[] = {0, 3, 24, 100, 4097};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            errno = 0;
            CHECK(fns[f](bad[i], 64) == NULL && errno == EINVAL);
        }
        for (size_t a = 1; a <= (size_t)1 << 23; a <<= 1) {
            void *m = fns[f](a, 3 * a / 2 + 1); /* not a multiple of a: allowed */
            CHECK(m && aligned(m, a) && aligned(m, 16));
            memset(m, 1, malloc_usable_size(m));
            free(m);
        }
        void *z = fns[f](64, 0);
        CHECK(z && aligned(z, 64));
        free(z);
        errno = 0;
        CHECK(fns[f](4096, SIZE_MAX - 8192) == NULL && errno == ENOMEM);
    }
}

static void test_valloc_pvalloc(void) {
    long page = sysconf(_SC_PAGESIZE);
    void *v = valloc(1);
    CHECK(v && aligned(v, (size_t)page));
    free(v);
    v = valloc(3 * page + 5);
    CHECK(v && aligned(v, (size_t)page) && malloc_usable_size(v) >= 3 * (size_t)page + 5);
    free(v);
    v = pvalloc(1);
    CHECK(v && aligned(v, (size_t)page) && malloc_usable_size(v) >= (size_t)page);
    memset(v, 7, (size_t)page);
    free(v);
    v = pvalloc(0);
    CHECK(v && aligned(v, (size_t)page) && malloc_usable_size(v) >= (size_t)page);
    free(v);
    v = pvalloc(2 * page + 1);
    CHECK(v && malloc_usable_size(v) >= 3 * (size_t)page);
    memset(v, 7, 3 * (size_t)page);
    free(v);
    errno = 0;
    CHECK(p_pvalloc(SIZE_MAX - 10) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(p_valloc(SIZE_MAX - 10) == NULL && errno == ENOMEM);
}

/* Neighbouring blocks written to their full usable size do not overlap. */
static void test_no_overlap(void) {
    enum { N = 2000 };
    static unsigned char *blk[N];
    for (int i = 0; i < N; i++) {
        size_t sz = (size_t)(i * 37 % 3000);
        blk[i] = (i % 3 == 0) ? calloc(1, sz) : malloc(sz);
        fill(blk[i], malloc_usable_size(blk[i]), (unsigned)i);
    }
    for (int i = 0; i < N; i += 2) {
        CHECK(check_fill(blk[i], malloc_usable_size(blk[i]), (unsigned)i));
        free(blk[i]);
    }
    for (int i = 0; i < N; i += 2) {
        blk[i] = malloc((size_t)i);
        fill(blk[i], malloc_usable_size(blk[i]), (unsigned)i);
    }
    for (int i = 0; i < N; i++) {
        CHECK(check_fill(blk[i], malloc_usable_size(blk[i]), (unsigned)i));
        free(blk[i]);
    }
}

/* libc functions that allocate internally hand their memory to our free. */
static void test_libc_internal(void) {
    char *s = strdup("hello shoalloc");
    CHECK(s && strcmp(s, "hello shoalloc") == 0);
    free(s);
    char *line = NULL;
    size_t cap = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    if (f) {
        while (getline(&line, &cap, f) > 0) {
        }
        fclose(f);
    }
    free(line);
    char *buf = NULL;
    CHECK(asprintf(&buf, "%d-%s", 42, "x") > 0 && strcmp(buf, "42-x") == 0);
    free(buf);
}

/* Resident bytes of this process (second field of /proc/self/statm). */
static size_t rss(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (!f) return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    fclose(f);
    return (size_t)resident * 4096;
}

/* malloc_trim gives freed small and medium memory back at once: fill 128 MiB
 * with 64-byte blocks and 512 KiB buffers, free them, trim, and RSS is back
 * near where it started. */
static void test_malloc_trim(void) {
    enum { SMALL = 1 << 20, MEDIUM = 128 };
    static void *small[SMALL], *medium[MEDIUM];
    size_t before = rss();
    for (size_t i = 0; i < SMALL; i++) {
        small[i] = malloc(64);
        CHECK(small[i] != NULL);
        memset(small[i], 1, 64);
    }
    for (size_t i = 0; i < MEDIUM; i++) {
        medium[i] = malloc(512 << 10);
        CHECK(medium[i] != NULL);
        memset(medium[i], 1, 512 << 10);
    }
    size_t peak = rss();
    CHECK(peak > before + (100u << 20));
    for (size_t i = 0; i < SMALL; i++) free(small[i]);
    for (size_t i = 0; i < MEDIUM; i++) free(medium[i]);
    CHECK(malloc_trim(0) == 1);
    size_t after = rss();
    if (after > before + (16u << 20)) {
        fprintf(stderr, "malloc_trim: %zu MiB before, %zu MiB at peak, %zu MiB after\n",
                before >> 20, peak >> 20, after >> 20);
        CHECK(after <= before + (16u << 20));
    }
}

int main(void) {
    require_shoalloc();
    test_malloc_free();
    test_calloc();
    test_realloc();
    test_posix_memalign();
    test_aligned_alloc_memalign();
    test_valloc_pvalloc();
    test_no_overlap();
    test_libc_internal();
    test_malloc_trim();
    if (failures) {
        fprintf(stderr, "api: %d check(s) failed\n", failures);
        return 1;
    }
    printf("api: all ok\n");
    return 0;
}
