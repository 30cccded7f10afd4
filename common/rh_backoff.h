/* rh_backoff.h - retry delays: exponential, capped, with full jitter. */
#ifndef RH_BACKOFF_H
#define RH_BACKOFF_H

#include <stdint.h>

/*
 * Delay before retry number `attempt` (1 = after the first failure):
 * uniform in [base, min(max, base * 2^(attempt-1))], drawn with u in [0,1).
 * Full jitter above the floor spreads a failed batch of 1000 jobs over the
 * whole window instead of retrying them all at one instant.
 */
double rh_backoff_delay(int attempt, double base, double max, double u);

/* A small per-process PRNG (xorshift64*), uniform in [0,1). */
double rh_rand_unit(uint64_t *state);
uint64_t rh_rand_seed(void);

#endif
