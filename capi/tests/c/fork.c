/*
 * fork() from a multithreaded parent on libshoalloc.so. Background threads
 * allocate, free and swap blocks without pause while the main thread, and
 * then one of the background threads, fork. Each child allocates, starts
 * threads, joins them, and exits 0 through exit() (atexit handlers and stdio
 * run). An alarm turns a deadlocked child into a failure instead of a hang.
 * Exits 0 and prints "fork: all ok".
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { BUSY = 3, SLOTS = 1024, FORKS = 24, FORKS_FROM_THREAD = 8 };

static atomic_int stop;
static _Atomic(unsigned char *) slots[SLOTS];

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t pick_size(uint64_t *rng) {
    uint64_t r = next_rand(rng);
    return r % 64 == 0 ? 300000 + r % 100000 : 1 + r % 3000;
}

static void *busy(void *arg) {
    uint64_t rng = 0x9E3779B97F4A7C15ull * ((uintptr_t)arg + 1);
    while (!atomic_load(&stop)) {
        size_t n = pick_size(&rng);
        unsigned char *p = (next_rand(&rng) & 1) ? malloc(n) : calloc(1, n);
        if (!p)
            abort();
        p[0] = p[n - 1] = 0x5A;
        p = realloc(p, n + 100);
        unsigned char *old = atomic_exchange(&slots[next_rand(&rng) % SLOTS], p);
        free(old);
    }
    return NULL;
}

static void *child_thread(void *arg) {
    uint64_t rng = (uintptr_t)arg * 977 + 3;
    void *keep[500];
    for (int i = 0; i < 500; i++) {
        keep[i] = malloc(pick_size(&rng));
        if (!keep[i])
            abort();
        memset(keep[i], 1, 16);
    }
    for (int i = 0; i < 500; i++)
        free(keep[i]);
    return malloc(100); /* freed by the joining thread */
}

static int exit_handler_ran;
static void at_exit_check(void) {
    exit_handler_ran = 1;
    free(malloc(33));
}

/* The child's whole life. */
static void child(int n) {
    alarm(30);
    atexit(at_exit_check);
    uint64_t rng = (uint64_t)n * 31 + 5;
    void *blocks[2000];
    for (int i = 0; i < 2000; i++) {
        blocks[i] = malloc(pick_size(&rng));
        if (!blocks[i])
            _exit(3);
    }
    /* Free blocks the parent's threads allocated (inherited slots), too. */
    for (int s = 0; s < SLOTS; s += 7) {
        free(atomic_exchange(&slots[s], NULL));
    }
    pthread_t t[3];
    for (uintptr_t i = 0; i < 3; i++)
        if (pthread_create(&t[i], NULL, child_thread, (void *)i) != 0)
            _exit(4);
    for (int i = 0; i < 3; i++) {
        void *ret = NULL;
        pthread_join(t[i], &ret);
        if (!ret)
            _exit(5);
        free(ret);
    }
    for (int i = 0; i < 2000; i++)
        free(blocks[i]);
    char *s = strdup("child");
    free(s);
    exit(0);
}

static int fork_and_wait(int n) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 0;
    }
    if (pid == 0)
        child(n);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid)
        return 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "fork: child %d ended with status 0x%x\n", n, status);
        return 0;
    }
    return 1;
}

static atomic_int failures;

static void *forking_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < FORKS_FROM_THREAD; i++)
        if (!fork_and_wait(1000 + i))
            atomic_fetch_add(&failures, 1);
    return NULL;
}

int main(void) {
    pthread_t t[BUSY];
    for (uintptr_t i = 0; i < BUSY; i++)
        if (pthread_create(&t[i], NULL, busy, (void *)i) != 0)
            return 1;
    for (int i = 0; i < FORKS; i++) {
        usleep(2000);
        if (!fork_and_wait(i))
            atomic_fetch_add(&failures, 1);
    }
    pthread_t f;
    if (pthread_create(&f, NULL, forking_thread, NULL) != 0)
        return 1;
    pthread_join(f, NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < BUSY; i++)
        pthread_join(t[i], NULL);
    for (int s = 0; s < SLOTS; s++)
        free(slots[s]);
    if (failures) {
        fprintf(stderr, "fork: %d child(ren) failed\n", failures);
        return 1;
    }
    printf("fork: %d children of a multithreaded parent exited 0: all ok\n",
           FORKS + FORKS_FROM_THREAD);
    return 0;
}
