/* The malloc-large pattern: a program that keeps 20 buffers of 5-25 MiB and,
 * again and again, frees one at random and allocates a new one of a random
 * size in its place, writing every page of it (an image or network buffer
 * pool, a decompressor's window). An allocator that returns each buffer to
 * the OS pays an mmap, a munmap and a page fault per 4 KiB every time.
 *
 * Each buffer is stamped (first and last byte, and one byte per page) with its
 * generation and checked before it is freed, so a broken allocator fails
 * instead of winning.
 *
 *   cc -O2 -o large large.c && ./large [iterations]   (default 2000)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define BUFFERS 20
#define MIB ((size_t)1 << 20)
#define MIN_SIZE (5 * MIB)
#define MAX_SIZE (25 * MIB)
#define PAGE 4096

static uint64_t rng = 42;

static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void stamp(unsigned char *p, size_t size, unsigned char tag) {
    for (size_t i = 0; i < size; i += PAGE) p[i] = tag;
    p[size - 1] = tag;
}

static int check(const unsigned char *p, size_t size, unsigned char tag) {
    for (size_t i = 0; i < size; i += PAGE)
        if (p[i] != tag) return 0;
    return p[size - 1] == tag;
}

int main(int argc, char **argv) {
    long iterations = argc > 1 ? atol(argv[1]) : 2000;
    unsigned char *buf[BUFFERS] = {0};
    size_t size[BUFFERS] = {0};
    unsigned char tag[BUFFERS] = {0};
    uint64_t checksum = 0;
    for (long it = 0; it < iterations; it++) {
        int i = (int)(next() % BUFFERS);
        if (buf[i]) {
            if (!check(buf[i], size[i], tag[i])) {
                fprintf(stderr, "large: buffer %d (%zu bytes) corrupted\n", i, size[i]);
                return 1;
            }
            free(buf[i]);
        }
        size[i] = MIN_SIZE + (size_t)(next() % (MAX_SIZE - MIN_SIZE + 1));
        tag[i] = (unsigned char)(it * 7 + 1);
        buf[i] = malloc(size[i]);
        if (!buf[i]) {
            fprintf(stderr, "large: out of memory\n");
            return 1;
        }
        stamp(buf[i], size[i], tag[i]);
        checksum += size[i] ^ tag[i];
    }
    for (int i = 0; i < BUFFERS; i++) free(buf[i]);
    printf("large: %ld buffers, checksum %llu\n", iterations, (unsigned long long)checksum);
    return 0;
}
