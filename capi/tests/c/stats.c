/* mallinfo2 and malloc_stats answer with shoalloc's numbers: 10 MiB of
 * small blocks make `arena` and `uordblks` grow by about that much, freeing
 * them and malloc_trim bring `uordblks` back down, and a huge block shows in
 * `hblks`/`hblkhd`. glibc's own mallinfo2 would pass most of these checks
 * too, so preload.rs also checks that malloc_stats printed shoalloc's table
 * (and that glibc's does not). */
#include "check.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIB ((size_t)1 << 20)
#define BLOCK 64
#define COUNT (10 * MIB / BLOCK)

int main(void) {
    static void *blocks[COUNT];
    struct mallinfo2 before = mallinfo2();
    for (size_t i = 0; i < COUNT; i++) {
        blocks[i] = malloc(BLOCK);
        CHECK(blocks[i] != NULL);
        memset(blocks[i], 1, BLOCK);
    }
    struct mallinfo2 mid = mallinfo2();
    CHECK(mid.arena >= before.arena + 9 * MIB);
    CHECK(mid.uordblks >= before.uordblks + 9 * MIB);
    CHECK(mid.keepcost == 0 && mid.ordblks == 0 && mid.smblks == 0);
    for (size_t i = 0; i < COUNT; i++)
        free(blocks[i]);
    malloc_trim(0);
    struct mallinfo2 after = mallinfo2();
    CHECK(after.uordblks + 9 * MIB <= mid.uordblks);
    CHECK(after.fordblks >= before.fordblks);

    void *huge = malloc(16 * MIB);
    CHECK(huge != NULL);
    struct mallinfo2 with_huge = mallinfo2();
    CHECK(with_huge.hblks == after.hblks + 1);
    CHECK(with_huge.hblkhd >= after.hblkhd + 16 * MIB);
    CHECK(with_huge.arena >= after.arena + 16 * MIB);
    free(huge);
    CHECK(mallinfo2().hblks == after.hblks);

    malloc_stats();
    printf("stats: arena %zu -> %zu, uordblks %zu -> %zu -> %zu\n",
           before.arena, mid.arena, before.uordblks, mid.uordblks,
           after.uordblks);
    if (atomic_load(&failures) == 0)
        printf("stats: all ok\n");
    return atomic_load(&failures) == 0 ? 0 : 1;
}
