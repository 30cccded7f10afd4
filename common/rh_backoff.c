/* rh_backoff.c - retry delays and the PRNG that jitters them. */
#include "config.h"

#include <math.h>
#include <time.h>
#include <unistd.h>

#include "rh_backoff.h"

double
rh_backoff_delay(int attempt, double base, double max, double u)
{
    double cap;

    if (attempt < 1)
        attempt = 1;
    if (u < 0)
        u = 0;
    if (u >= 1)
        u = 0.999999999;
    /* 2^62 overflows nothing in a double, but clamp the exponent anyway */
    cap = base * ldexp(1.0, attempt > 62 ? 61 : attempt - 1);
    if (cap > max)
        cap = max;
    if (cap < base)
        return cap;             /* max < base: the config check forbids it */
    return base + u * (cap - base);
}

uint64_t
rh_rand_seed(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((uint64_t) ts.tv_nsec << 20) ^ (uint64_t) ts.tv_sec ^ ((uint64_t) getpid() << 40) ^ 0x9E3779B97F4A7C15ULL;
}

double
rh_rand_unit(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ULL;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return (double) ((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}
