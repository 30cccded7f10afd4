/*
 * rh_limits.c - the reaper's share of queue limits and priority aging.
 *
 * The limits themselves are enforced by the claim (rhino.claim_limited() in
 * sql/005_limits.sql); nothing here is needed for them to hold.  What the
 * reaper adds:
 *
 *   - the limited flag.  Workers send the plain claim, which skips limited
 *     queues, unless their slot's `limited` flag says that some queue of
 *     [worker] queues has limits; then they send RH_STMT_CLAIM_LIMITED.  So
 *     a node whose queues have no limits pays nothing for the feature, and a
 *     limit set on one of its queues is claimed within one reaper interval.
 *   - aging ticks (RH_STMT_AGE), safe from every host at once;
 *   - pruning of per-key token buckets that have refilled.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rh_db.h"
#include "rh_limits.h"
#include "rh_log.h"
#include "rh_sql.h"

/* Seconds between two prunes of the per-key token buckets. */
#define RH_LIMITS_PRUNE_INTERVAL 60.0

static struct {
    char  *queues;              /* [worker] queues as a text[] literal; NULL until the first pass */
    double last_prune;          /* rh_mono_now() of the last prune */
} L = { NULL, -INFINITY };      /* never pruned: due at the first pass */

void
rh_limits_pass(PGconn *conn, const rh_config_t *cfg, rh_shm_t *shm, double now)
{
    PGresult *res;

    if (L.queues == NULL && (L.queues = rh_db_text_array(cfg->queues, cfg->nqueues)) == NULL)
        rh_log_error("out of memory: the limits of [worker] queues are not looked up this pass");
    if (L.queues != NULL) {
        const char *p[1] = { L.queues };

        if ((res = rh_db_exec(conn, RH_STMT_LIMITS_FLAG, p, NULL)) != NULL) {
            int limited = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
            int n = rh_shm_load(&shm->nslots);

            for (int i = 0; i < n; i++)
                rh_shm_store(&shm->slot[i].limited, limited);
            PQclear(res);
        }
    }

    /*
     * JIT off: the planner cannot know how few queues tick, and on a large
     * rhino.jobs its estimate passed the JIT thresholds, 96-476 ms of
     * compiling every pass (see RH_STMT_AGE).
     */
    if ((res = rh_db_exec_nojit(conn, RH_STMT_AGE, NULL)) != NULL) {
        int n = atoi(PQcmdTuples(res));

        if (n > 0)
            rh_log_debug("aging: %d waiting job(s) moved one priority level up", n);
        PQclear(res);
    }

    if (now - L.last_prune >= RH_LIMITS_PRUNE_INTERVAL) {
        L.last_prune = now;
        if ((res = rh_db_exec(conn, RH_STMT_LIMITS_PRUNE, NULL, NULL)) != NULL)
            PQclear(res);
    }
}
