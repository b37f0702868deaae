/* The failure counter and CHECK macro shared by the C tests:
 * a failed check is reported with its place and counted, and the program's
 * exit status says whether any failed (atomically, so threads may check). */
#ifndef SHOALLOC_TEST_CHECK_H
#define SHOALLOC_TEST_CHECK_H

#include <stdatomic.h>
#include <stdio.h>

static atomic_int failures;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            atomic_fetch_add(&failures, 1);                                    \
        }                                                                      \
    } while (0)

#endif
