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
    char   queues[8192];        /* [worker] queues as a text[] literal */
    int    queues_ok;
    double last_prune;
} L;

/* [worker] queues as a text[] literal, every name quoted; -1 if it does not fit. */
static int
limits_queues_literal(const rh_config_t *cfg)
{
    size_t n = 0;

    L.queues[n++] = '{';
    for (int i = 0; i < cfg->nqueues; i++) {
        if (n + 3 >= sizeof(L.queues))
            return -1;
        if (i > 0)
            L.queues[n++] = ',';
        L.queues[n++] = '"';
        for (const char *c = cfg->queues[i]; *c; c++) {
            if (n + 4 >= sizeof(L.queues))
                return -1;
            if (*c == '"' || *c == '\\')
                L.queues[n++] = '\\';
            L.queues[n++] = *c;
        }
        L.queues[n++] = '"';
    }
    L.queues[n++] = '}';
    L.queues[n] = '\0';
    return 0;
}

/* Run one statement; its result (caller clears), or NULL after logging the failure. */
static PGresult *
limits_exec(PGconn *conn, rh_stmt_id_t id, const char *const *params)
{
    const rh_stmt_t *st = rh_sql(id);
    PGresult        *res = PQexecParams(conn, st->sql, st->nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType   s = PQresultStatus(res);

    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        rh_log_error("%s failed: %s", st->name, rh_db_error(conn, res));
        PQclear(res);
        return NULL;
    }
    return res;
}

void
rh_limits_pass(PGconn *conn, const rh_config_t *cfg, rh_shm_t *shm, double now)
{
    PGresult *res;

    if (!L.queues_ok) {
        if (limits_queues_literal(cfg) < 0) {
            rh_log_error("[worker] queues is too long to look up its limits; limited queues are not claimed");
            L.queues[0] = '\0';
        }
        L.queues_ok = 1;
    }
    if (L.queues[0] != '\0') {
        const char *p[1] = { L.queues };

        if ((res = limits_exec(conn, RH_STMT_LIMITS_FLAG, p)) != NULL) {
            int limited = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
            int n = rh_shm_load(&shm->nslots);

            for (int i = 0; i < n; i++)
                rh_shm_store(&shm->slot[i].limited, limited);
            PQclear(res);
        }
    }

    if ((res = limits_exec(conn, RH_STMT_AGE, NULL)) != NULL) {
        int n = atoi(PQcmdTuples(res));

        if (n > 0)
            rh_log_debug("aging: %d waiting job(s) moved one priority level up", n);
        PQclear(res);
    }

    if (now - L.last_prune >= RH_LIMITS_PRUNE_INTERVAL) {
        L.last_prune = now;
        if ((res = limits_exec(conn, RH_STMT_LIMITS_PRUNE, NULL)) != NULL)
            PQclear(res);
    }
}
