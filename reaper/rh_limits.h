/* rh_limits.h - the reaper's share of queue limits and priority aging (sql/005_limits.sql). */
#ifndef RH_LIMITS_H
#define RH_LIMITS_H

#include <libpq-fe.h>

#include "rh_config.h"
#include "rh_shm.h"

/*
 * One reaper pass's work for queue limits, on the reaper's connection:
 * tell this node's workers whether any of their queues has limits (so that
 * they claim with RH_STMT_CLAIM_LIMITED), run the aging ticks that are due,
 * and once a minute forget full per-key token buckets.  now is the loop's
 * clock in seconds.  Errors are logged; the next pass tries again.
 */
void rh_limits_pass(PGconn *conn, const rh_config_t *cfg, rh_shm_t *shm, double now);

#endif
