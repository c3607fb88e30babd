/*
 * A minimal TAP producer for the C unit tests: each check prints
 * "ok N - name" or "not ok N - name"; unit_done() prints the plan.
 */

#ifndef _ORBIT_UNIT_H_INCLUDED_
#define _ORBIT_UNIT_H_INCLUDED_


#include <stdio.h>
#include <string.h>


static int  unit_n, unit_failed;


#define UNIT_OK(cond, name)                                                  \
    do {                                                                     \
        unit_n++;                                                            \
        if (cond) {                                                          \
            printf("ok %d - %s\n", unit_n, name);                            \
        } else {                                                             \
            unit_failed++;                                                   \
            printf("not ok %d - %s\n#   %s:%d: %s\n", unit_n, name,          \
                   __FILE__, __LINE__, #cond);                               \
        }                                                                    \
    } while (0)

#define UNIT_STR(got, glen, want, name)                                      \
    do {                                                                     \
        size_t  l_ = strlen(want);                                           \
        int     ok_ = (glen) == l_ && memcmp(got, want, l_) == 0;            \
        UNIT_OK(ok_, name);                                                  \
        if (!ok_) {                                                          \
            printf("#   got:  '%.*s'\n#   want: '%s'\n", (int) (glen),       \
                   (const char *) (got), want);                              \
        }                                                                    \
    } while (0)


static int
unit_done(void)
{
    printf("1..%d\n", unit_n);
    return unit_failed ? 1 : 0;
}


#endif /* _ORBIT_UNIT_H_INCLUDED_ */
