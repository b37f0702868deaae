/*
 * A shared module with thread-local storage, dlopen'ed and dlclose'd over and
 * over by dlopen_tls.c. Compiled many times, with -DMODULE_ID=<n> and
 * -DTLS_BYTES=<size>, into separate modules: each is a TLS module of its own
 * to the dynamic linker. Its `__thread` variables use the general-dynamic
 * model (-fPIC), so every access goes through __tls_get_addr, and the
 * module's TLS block is allocated per thread on first access, with malloc;
 * a large TLS_BYTES (beyond glibc's static-TLS surplus) could not be placed
 * anywhere else.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifndef MODULE_ID
#error "compile with -DMODULE_ID=<n>"
#endif
#ifndef TLS_BYTES
#error "compile with -DTLS_BYTES=<size>"
#endif

#define MAGIC (0x5eed0000u + MODULE_ID)

/* .tdata: the initial image must be copied into every thread's new block. */
static __thread unsigned magic = MAGIC;
/* .tbss, over-aligned to make the block layout less trivial. */
static __thread _Alignas(64) unsigned char bytes[TLS_BYTES];
/* A block of the preloaded allocator, owned by this thread's TLS. */
static __thread unsigned char *held;
static __thread size_t held_size;

enum { STRIDE = 61 };

int tls_module_id(void) { return MODULE_ID; }

/*
 * Fills this thread's TLS with a pattern of `seed` and has it own a fresh
 * malloc'ed block with the same pattern. Returns the address of the TLS
 * array, or NULL if the TLS was not in its initial state (wrong .tdata image,
 * or a block still held from before).
 */
void *tls_fill(unsigned seed) {
    if (magic != MAGIC || held != NULL)
        return NULL;
    for (size_t i = 0; i < TLS_BYTES; i += STRIDE)
        bytes[i] = (unsigned char)(seed + i);
    bytes[TLS_BYTES - 1] = (unsigned char)(seed * 7);
    held_size = 24 + seed % 3000;
    held = malloc(held_size);
    if (held == NULL)
        return NULL;
    for (size_t i = 0; i < held_size; i++)
        held[i] = (unsigned char)(seed ^ i);
    return bytes;
}

/*
 * The number of bytes of this thread's TLS and of its held block that no
 * longer show the pattern of `seed`. With `release`, frees the held block.
 */
long tls_check(unsigned seed, int release) {
    long bad = magic != MAGIC;
    for (size_t i = 0; i < TLS_BYTES; i += STRIDE)
        bad += bytes[i] != (unsigned char)(seed + i);
    bad += bytes[TLS_BYTES - 1] != (unsigned char)(seed * 7);
    if (held == NULL)
        return bad + 1;
    for (size_t i = 0; i < held_size; i++)
        bad += held[i] != (unsigned char)(seed ^ i);
    if (release) {
        free(held);
        held = NULL;
    }
    return bad;
}
