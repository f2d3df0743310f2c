/* Minimal test harness shared by the C tests: CHECK counts failures and keeps going. */
#ifndef PS3RT_TEST_CHECK_H
#define PS3RT_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

#include "ps3rt.h"

static int checks_passed = 0;
static int checks_failed = 0;

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (cond) {                                                                              \
            checks_passed++;                                                                     \
        } else {                                                                                 \
            checks_failed++;                                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__,    \
                    #cond, ps3rt_last_error());                                                  \
        }                                                                                        \
    } while (0)

/* A call that must fail with `status` and leave a last error containing `needle`. */
#define CHECK_FAILS(call, status, needle)                                                        \
    do {                                                                                         \
        ps3rt_status got_ = (call);                                                              \
        if (got_ == (status) && strstr(ps3rt_last_error(), (needle)) != NULL) {                  \
            checks_passed++;                                                                     \
        } else {                                                                                 \
            checks_failed++;                                                                     \
            fprintf(stderr, "%s:%d: %s returned %d (want %d), last error \"%s\" (want \"%s\")\n", \
                    __FILE__, __LINE__, #call, (int)got_, (int)(status), ps3rt_last_error(),     \
                    (needle));                                                                   \
        }                                                                                        \
    } while (0)

#define CHECK_OK(call) CHECK((call) == PS3RT_STATUS_OK)

/* The closing line test runners read ("N passed, N failed"); exit status 0 only when all passed. */
static int check_summary(const char* name) {
    printf("%s: %d passed, %d failed\n", name, checks_passed, checks_failed);
    return checks_failed == 0 && checks_passed > 0 ? 0 : 1;
}

#endif
