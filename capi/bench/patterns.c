/* Three classic allocator benchmark patterns in one program, the mode named by
 * argv[1] (the shapes of mimalloc-bench's cfrac, larson and xmalloc-test,
 * written anew here, small enough to read):
 *
 *   churn    one thread of arbitrary-precision arithmetic: numbers are malloc'd
 *            digit arrays of 2-126 limbs (16-512 bytes), and every multiply,
 *            add and divide-by-small makes a new number and frees an old one
 *            (cfrac's many short-lived small objects);
 *   larson   the larson server: 2 threads, each owning an array of slots, free
 *            a random slot and allocate a block of random size (16-1024 bytes)
 *            there, again and again; after each round the arrays change hands,
 *            so most blocks are freed by the thread that did not allocate them;
 *   xmalloc  producer/consumer: one thread allocates and fills blocks of varied
 *            small sizes and passes them through a bounded ring to a second
 *            thread, which checks and frees them (every free is remote).
 *
 * Every block carries a stamp derived from what the program knows about it,
 * checked before it is freed, so a broken allocator fails (exit 1 with a
 * message) instead of winning. The random numbers come from seeded xorshift
 * generators and each thread's work is fixed in advance, so the checksum on
 * stdout is the same on every allocator and every run.
 *
 *   cc -O2 -pthread -o patterns patterns.c
 *   ./patterns churn|larson|xmalloc [scale]   (scale multiplies the work; default 1)
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void *xmalloc_or_die(size_t size, const char *who) {
    void *p = malloc(size);
    if (!p) {
        fprintf(stderr, "%s: out of memory (%zu bytes)\n", who, size);
        exit(1);
    }
    return p;
}

static void die(const char *who, const char *what, uint64_t a, uint64_t b) {
    fprintf(stderr, "%s: %s (%llu, %llu)\n", who, what, (unsigned long long)a,
            (unsigned long long)b);
    exit(1);
}

/* ---- churn ------------------------------------------------------------------
 * A number is { len, hash, limbs[len] } with 32-bit limbs, least significant
 * first; 8 + 4 * len bytes, so 2..126 limbs is 16..512 bytes. `hash` is
 * computed when the number is made and checked when it is freed. */
typedef struct {
    uint32_t len, hash;
    uint32_t d[];
} big;

#define BIG_MIN 2
#define BIG_MAX 126
#define POOL 512

static uint32_t big_hash(const big *a) {
    uint32_t h = 2166136261u ^ a->len;
    for (uint32_t i = 0; i < a->len; i++) h = (h ^ a->d[i]) * 16777619u;
    return h;
}

static big *big_new(uint32_t len) {
    big *a = xmalloc_or_die(sizeof(big) + sizeof(uint32_t) * len, "churn");
    a->len = len;
    return a;
}

static big *big_seal(big *a) { /* drop leading zero limbs (keep BIG_MIN), stamp */
    while (a->len > BIG_MIN && a->d[a->len - 1] == 0) a->len--;
    a->hash = big_hash(a);
    return a;
}

static void big_free(big *a) {
    if (a->len < BIG_MIN || a->len > BIG_MAX + 1 || a->hash != big_hash(a))
        die("churn", "number corrupted before free (len, hash)", a->len, a->hash);
    free(a);
}

static big *big_random(uint64_t *s, uint32_t len) {
    big *a = big_new(len);
    for (uint32_t i = 0; i < len; i++) a->d[i] = (uint32_t)xorshift(s);
    a->d[len - 1] |= 1;
    return big_seal(a);
}

static big *big_mul(const big *a, const big *b) {
    big *r = big_new(a->len + b->len);
    memset(r->d, 0, sizeof(uint32_t) * r->len);
    for (uint32_t i = 0; i < a->len; i++) {
        uint64_t carry = 0;
        for (uint32_t j = 0; j < b->len; j++) {
            uint64_t t = (uint64_t)a->d[i] * b->d[j] + r->d[i + j] + carry;
            r->d[i + j] = (uint32_t)t;
            carry = t >> 32;
        }
        r->d[i + b->len] = (uint32_t)carry;
    }
    return big_seal(r);
}

static big *big_add(const big *a, const big *b) {
    if (a->len < b->len) {
        const big *t = a;
        a = b;
        b = t;
    }
    big *r = big_new(a->len + 1);
    uint64_t carry = 0;
    for (uint32_t i = 0; i < a->len; i++) {
        uint64_t t = (uint64_t)a->d[i] + (i < b->len ? b->d[i] : 0) + carry;
        r->d[i] = (uint32_t)t;
        carry = t >> 32;
    }
    r->d[a->len] = (uint32_t)carry;
    return big_seal(r);
}

static big *big_divsmall(const big *a, uint32_t m, uint32_t *rem) {
    big *r = big_new(a->len);
    uint64_t rest = 0;
    for (uint32_t i = a->len; i-- > 0;) {
        uint64_t cur = (rest << 32) | a->d[i];
        r->d[i] = (uint32_t)(cur / m);
        rest = cur % m;
    }
    *rem = (uint32_t)rest;
    return big_seal(r);
}

static big *big_low(const big *a, uint32_t len) { /* a mod 2^(32 len), as a copy */
    big *r = big_new(len);
    memcpy(r->d, a->d, sizeof(uint32_t) * len);
    r->d[len - 1] |= 1;
    return big_seal(r);
}

static int churn(long scale) {
    uint64_t s = 0x9e3779b97f4a7c15ull, sum = 0;
    big *pool[POOL];
    for (int i = 0; i < POOL; i++) pool[i] = big_random(&s, BIG_MIN + (uint32_t)(xorshift(&s) % 30));
    long steps = 10000000 * scale;
    for (long step = 0; step < steps; step++) {
        uint64_t r = xorshift(&s);
        int i = (int)(r % POOL), j = (int)((r >> 16) % POOL), k = (int)((r >> 32) % POOL);
        big *x;
        if ((r >> 60) == 0 && pool[j]->len + pool[k]->len <= BIG_MAX) {
            /* 1 in 16: a multiply, the expensive step (the product stays
             * within BIG_MAX limbs, the sum after it within BIG_MAX + 1). */
            big *p = big_mul(pool[j], pool[k]);
            x = big_add(p, pool[i]);
            big_free(p);
        } else {
            x = big_add(pool[j], pool[k]);
        }
        /* Divide by a small odd number, then by another: two more short-lived
         * numbers, like the trial divisions of a factoring loop. */
        uint32_t rem1, rem2;
        big *q1 = big_divsmall(x, 3 + 2 * (uint32_t)((r >> 40) % 500), &rem1);
        big_free(x);
        big *q2 = big_divsmall(q1, 7 + 2 * (uint32_t)((r >> 48) % 100), &rem2);
        big_free(q1);
        sum = sum * 31 + rem1 + rem2;
        /* Keep sizes in 2..126 limbs, mostly short: a result longer than a
         * random cap (2..16 limbs seven times in eight, up to 126 otherwise)
         * is cut to that cap. */
        big *next = q2;
        uint64_t c = xorshift(&s);
        uint32_t cap = BIG_MIN + (uint32_t)((c & 7) ? (c >> 8) % 15 : (c >> 8) % (BIG_MAX - BIG_MIN + 1));
        if (q2->len > cap) {
            next = big_low(q2, cap);
            big_free(q2);
        }
        big_free(pool[i]);
        pool[i] = next;
    }
    for (int i = 0; i < POOL; i++) {
        sum = sum * 31 + pool[i]->hash + pool[i]->len;
        big_free(pool[i]);
    }
    printf("churn: %ld steps, checksum %llu\n", steps, (unsigned long long)sum);
    return 0;
}

/* ---- larson -----------------------------------------------------------------
 * Each slot array carries its own generator and checksum, and exactly one
 * thread works on it per round, so the results do not depend on which thread
 * that is or on timing. A block's first 8 and last 8 bytes hold a stamp
 * derived from the array, the slot and the block's generation. */
#define L_THREADS 2
#define L_SLOTS 4000
#define L_ROUNDS 100
#define L_MIN 16
#define L_MAX 1024

typedef struct {
    unsigned char *p[L_SLOTS];
    uint32_t size[L_SLOTS];
    uint64_t gen[L_SLOTS];
    uint64_t rng, sum, id;
} slots;

static slots l_arrays[L_THREADS];
static pthread_barrier_t l_barrier;
static long l_ops_per_round;

static uint64_t l_stamp(const slots *a, int i) {
    return (a->id << 56) ^ ((uint64_t)i << 32) ^ a->gen[i] ^ 0x5bd1e995u;
}

static void l_fill(slots *a, int i) {
    uint64_t st = l_stamp(a, i);
    unsigned char *p = a->p[i];
    size_t n = a->size[i];
    memcpy(p, &st, 8);
    memcpy(p + n - 8, &st, 8);
    for (size_t k = 8; k + 8 < n; k += 64) p[k] = (unsigned char)(st >> 8); /* touch each line */
}

static void l_check(const slots *a, int i) {
    uint64_t st = l_stamp(a, i), x, y;
    const unsigned char *p = a->p[i];
    size_t n = a->size[i];
    memcpy(&x, p, 8);
    memcpy(&y, p + n - 8, 8);
    if (x != st || y != st) die("larson", "block corrupted before free (slot, size)", (uint64_t)i, n);
    for (size_t k = 8; k + 8 < n; k += 64)
        if (p[k] != (unsigned char)(st >> 8)) die("larson", "block interior corrupted (slot, offset)", (uint64_t)i, k);
}

static void l_alloc(slots *a, int i) {
    a->size[i] = L_MIN + (uint32_t)(xorshift(&a->rng) % (L_MAX - L_MIN + 1));
    a->gen[i]++;
    a->p[i] = xmalloc_or_die(a->size[i], "larson");
    l_fill(a, i);
    a->sum = a->sum * 31 + a->size[i];
}

static void *l_worker(void *arg) {
    int t = (int)(intptr_t)arg;
    for (int round = 0; round < L_ROUNDS; round++) {
        slots *a = &l_arrays[(t + round) % L_THREADS]; /* handed on each round */
        for (long op = 0; op < l_ops_per_round; op++) {
            int i = (int)(xorshift(&a->rng) % L_SLOTS);
            l_check(a, i);
            free(a->p[i]);
            l_alloc(a, i);
        }
        pthread_barrier_wait(&l_barrier);
    }
    return NULL;
}

static int larson(long scale) {
    l_ops_per_round = 90000 * scale;
    for (int t = 0; t < L_THREADS; t++) {
        slots *a = &l_arrays[t];
        a->rng = 0x2545f4914f6cdd1dull + (uint64_t)t * 7919;
        a->id = (uint64_t)t + 1;
        for (int i = 0; i < L_SLOTS; i++) l_alloc(a, i); /* all allocated by main */
    }
    pthread_barrier_init(&l_barrier, NULL, L_THREADS);
    pthread_t th[L_THREADS];
    for (int t = 0; t < L_THREADS; t++) pthread_create(&th[t], NULL, l_worker, (void *)(intptr_t)t);
    for (int t = 0; t < L_THREADS; t++) pthread_join(th[t], NULL);
    uint64_t sum = 0;
    for (int t = 0; t < L_THREADS; t++) {
        slots *a = &l_arrays[t];
        for (int i = 0; i < L_SLOTS; i++) {
            l_check(a, i);
            free(a->p[i]);
        }
        sum = sum * 1000003 + a->sum;
    }
    printf("larson: %d threads x %d rounds x %ld ops, checksum %llu\n", L_THREADS, L_ROUNDS,
           l_ops_per_round, (unsigned long long)sum);
    return 0;
}

/* ---- xmalloc ----------------------------------------------------------------
 * A single-producer single-consumer ring of pointers; when it is full or empty
 * the waiting side yields the CPU (the machine may have as few cores as
 * threads). A block is { size, seq, pattern bytes } with the pattern a
 * function of seq, so the consumer can check it without shared state. */
#define X_RING 4096
#define X_MIN 16
#define X_MAX 512

static void *x_ring[X_RING];
static _Atomic uint64_t x_head, x_tail; /* head: next to write; tail: next to read */
static long x_blocks;

static void *x_producer(void *arg) {
    (void)arg;
    uint64_t s = 0x853c49e6748fea9bull;
    for (long n = 0; n < x_blocks; n++) {
        uint64_t r = xorshift(&s);
        /* Mostly small, now and then up to X_MAX: sizes of a message or a node. */
        uint32_t size = (r & 7) ? X_MIN + (uint32_t)((r >> 8) % 112) : X_MIN + (uint32_t)((r >> 8) % (X_MAX - X_MIN + 1));
        unsigned char *p = xmalloc_or_die(size, "xmalloc");
        uint64_t seq = (uint64_t)n;
        memcpy(p, &size, 4);
        memcpy(p + 4, &seq, 8);
        for (uint32_t k = 12; k < size; k++) p[k] = (unsigned char)(seq * 131 + k);
        uint64_t h = atomic_load_explicit(&x_head, memory_order_relaxed);
        while (h - atomic_load_explicit(&x_tail, memory_order_acquire) == X_RING) sched_yield();
        x_ring[h % X_RING] = p;
        atomic_store_explicit(&x_head, h + 1, memory_order_release);
    }
    return NULL;
}

static void *x_consumer(void *arg) {
    uint64_t *out = arg, sum = 0;
    for (long n = 0; n < x_blocks; n++) {
        uint64_t t = atomic_load_explicit(&x_tail, memory_order_relaxed);
        while (atomic_load_explicit(&x_head, memory_order_acquire) == t) sched_yield();
        unsigned char *p = x_ring[t % X_RING];
        atomic_store_explicit(&x_tail, t + 1, memory_order_release);
        uint32_t size;
        uint64_t seq;
        memcpy(&size, p, 4);
        memcpy(&seq, p + 4, 8);
        if (seq != (uint64_t)n || size < X_MIN || size > X_MAX) die("xmalloc", "block header corrupted (seq, size)", seq, size);
        for (uint32_t k = 12; k < size; k++)
            if (p[k] != (unsigned char)(seq * 131 + k)) die("xmalloc", "block corrupted (seq, offset)", seq, k);
        sum = sum * 31 + size;
        free(p);
    }
    *out = sum;
    return NULL;
}

static int xmalloc_test(long scale) {
    x_blocks = 3000000 * scale;
    uint64_t sum = 0;
    pthread_t prod, cons;
    pthread_create(&cons, NULL, x_consumer, &sum);
    pthread_create(&prod, NULL, x_producer, NULL);
    pthread_join(prod, NULL);
    pthread_join(cons, NULL);
    printf("xmalloc: %ld blocks, checksum %llu\n", x_blocks, (unsigned long long)sum);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    long scale = argc > 2 ? atol(argv[2]) : 1;
    if (scale < 1) scale = 1;
    if (!strcmp(mode, "churn")) return churn(scale);
    if (!strcmp(mode, "larson")) return larson(scale);
    if (!strcmp(mode, "xmalloc")) return xmalloc_test(scale);
    fprintf(stderr, "usage: %s churn|larson|xmalloc [scale]\n", argv[0]);
    return 2;
}
