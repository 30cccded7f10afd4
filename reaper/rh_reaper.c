/*
 * rh_reaper.c - the reaper: one connection, one periodic timer (the
 * PgBouncer janitor pattern).  Each pass:
 *
 *   1. reconcile: rows of this node's workers that the master's process
 *      table (shared memory) shows dead are marked ended;
 *   2. rescue: running jobs of ended workers, and of nodes whose lease ran
 *      out (a host that vanished), become available again, fenced by attempt;
 *   3. promote: scheduled and retryable jobs that are due become available;
 *   4. every lease/3: renew this node's lease;
 *   5. every minute: prune finished jobs past [retention], forget old nodes.
 *
 * Every statement is safe to run from several hosts at once (SKIP LOCKED,
 * fenced updates), so no leader election is needed.  The master sends
 * SIGUSR1 when a worker dies, so its jobs are back within one round trip
 * instead of one interval.  Queries are synchronous: the reaper has nothing
 * else to do while one runs, and its signals are only noted by libev.
 */
#include "config.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>
#include <libpq-fe.h>

#include "rh_db.h"
#include "rh_log.h"
#include "rh_proc.h"
#include "rh_reaper.h"
#include "rh_sql.h"

static struct {
    const rh_config_t *cfg;
    int64_t            node_id;
    char               node_s[24];
    rh_shm_t          *shm;
    struct ev_loop    *loop;
    PGconn            *conn;
    ev_timer           tick;
    ev_signal          sig_term, sig_usr1;
    double             last_renew, last_prune;
    double             reconnect_delay;
    int                node_lost_logged;
} R;

/* Run one statement; returns the result (caller clears) or NULL after logging. */
static PGresult *
r_exec(rh_stmt_id_t id, const char *const *params)
{
    const rh_stmt_t *st = rh_sql(id);
    PGresult        *res = PQexecParams(R.conn, st->sql, st->nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType   s = PQresultStatus(res);

    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        rh_log_error("%s failed: %s", st->name, rh_db_error(R.conn, res));
        PQclear(res);
        return NULL;
    }
    return res;
}

static int
r_exec_count(rh_stmt_id_t id, const char *const *params)
{
    PGresult *res = r_exec(id, params);
    int       n;

    if (res == NULL)
        return -1;
    n = atoi(PQcmdTuples(res));
    PQclear(res);
    return n;
}

static int
r_connect(void)
{
    char err[1024];

    if (R.conn && PQstatus(R.conn) == CONNECTION_OK)
        return 0;
    if (R.conn)
        PQfinish(R.conn);
    R.conn = rh_db_connect(R.cfg->dsn, "reaper", err, sizeof(err));
    if (R.conn == NULL) {
        R.reconnect_delay = R.reconnect_delay ? R.reconnect_delay * 2 : 0.1;
        if (R.reconnect_delay > 5)
            R.reconnect_delay = 5;
        rh_log_error("%s; retrying", err);
        return -1;
    }
    R.reconnect_delay = 0;
    return 0;
}

static void
reconcile(void)
{
    char        slots[RH_MAX_PROCESSES * 8 + 4], mins[RH_MAX_PROCESSES * 12 + 4];
    size_t      so = 0, mo = 0;
    int         n = rh_shm_load(&R.shm->nslots);
    const char *p[3] = { R.node_s, slots, mins };
    int         ended;

    slots[so++] = '{';
    mins[mo++] = '{';
    for (int i = 0; i < n; i++) {
        so += (size_t) snprintf(slots + so, sizeof(slots) - so, "%s%d", i ? "," : "", i);
        mo += (size_t) snprintf(mins + mo, sizeof(mins) - mo, "%s%d", i ? "," : "",
                                rh_shm_load(&R.shm->slot[i].min_live));
    }
    snprintf(slots + so, sizeof(slots) - so, "}");
    snprintf(mins + mo, sizeof(mins) - mo, "}");
    ended = r_exec_count(RH_STMT_WORKERS_RECONCILE, p);
    if (ended > 0)
        rh_log_info("%d dead worker(s) marked ended", ended);
}

static void
pass(void)
{
    double now = ev_now(R.loop);
    int    n;

    if (r_connect() < 0)
        return;

    reconcile();
    n = r_exec_count(RH_STMT_RESCUE, NULL);
    if (n > 0)
        rh_log_warning("rescued %d job(s) of dead workers", n);
    r_exec_count(RH_STMT_PROMOTE, NULL);

    if (now - R.last_renew >= R.cfg->lease / 3) {
        char        lease[32];
        const char *p[2] = { R.node_s, lease };
        PGresult   *res;

        snprintf(lease, sizeof(lease), "%.3f", R.cfg->lease);
        res = r_exec(RH_STMT_NODE_RENEW, p);
        if (res) {
            if (PQntuples(res) == 1) {
                R.last_renew = now;
            } else {
                /*
                 * Our lease ran out (the database was unreachable longer than
                 * [reaper] lease) and other hosts may have rescued our jobs.
                 * Our workers' finalizes are fenced, but the clean answer is a
                 * fresh start with a fresh node.
                 */
                PQclear(res);
                rh_fatal("this node's lease in rhino.nodes expired or was ended; stopping so that "
                         "rhino starts afresh (raise [reaper] lease if the database is often away)");
            }
            PQclear(res);
        }
    }
    if (now - R.last_prune >= 60) {
        char        c[32], d[32];
        const char *p[2] = { c, d };
        int         total = 0;

        R.last_prune = now;
        snprintf(c, sizeof(c), "%.3f", R.cfg->retention_completed);
        snprintf(d, sizeof(d), "%.3f", R.cfg->retention_discarded);
        /* small batches, so that no pass holds locks or the loop for long */
        for (int i = 0; i < 20 && (n = r_exec_count(RH_STMT_PRUNE, p)) > 0; i++)
            total += n;
        if (total > 0)
            rh_log_info("pruned %d finished job(s) past retention", total);
        r_exec_count(RH_STMT_GC_NODES, NULL);
    }
    if (PQstatus(R.conn) != CONNECTION_OK) {
        rh_log_error("database connection lost; reconnecting");
        PQfinish(R.conn);
        R.conn = NULL;
    }
}

static void
on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    pass();
    ev_timer_set(&R.tick, R.conn ? R.cfg->reaper_interval : (R.reconnect_delay ? R.reconnect_delay : 0.1), 0);
    ev_timer_start(loop, &R.tick);
}

static void
on_usr1(struct ev_loop *loop, ev_signal *w, int revents)
{
    ev_timer_stop(loop, &R.tick);
    on_tick(loop, &R.tick, 0);
}

static void
on_term(struct ev_loop *loop, ev_signal *w, int revents)
{
    if (rh_shm_load(&R.shm->stopping)) {
        const char *p[1] = { R.node_s };

        /* the master is going away: a last pass, then mark the node stopped */
        pass();
        if (R.conn && r_exec_count(RH_STMT_NODE_STOP, p) >= 0)
            rh_log_info("node %s stopped", R.node_s);
    }
    if (R.conn)
        PQfinish(R.conn);
    exit(RH_EXIT_OK);
}

void
rh_reaper_main(const rh_config_t *cfg, int64_t node_id, rh_shm_t *shm)
{
    memset(&R, 0, sizeof(R));
    R.cfg = cfg;
    R.node_id = node_id;
    R.shm = shm;
    snprintf(R.node_s, sizeof(R.node_s), "%" PRId64, node_id);
    rh_log_set_role("reaper");
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    /* Ctrl-C reaches the whole process group; only the master decides when the reaper stops */
    signal(SIGINT, SIG_IGN);

    R.loop = ev_default_loop(EVFLAG_AUTO);
    if (R.loop == NULL)
        rh_fatal("cannot create the event loop");
    ev_signal_init(&R.sig_term, on_term, SIGTERM);
    ev_signal_start(R.loop, &R.sig_term);
    ev_signal_init(&R.sig_usr1, on_usr1, SIGUSR1);
    ev_signal_start(R.loop, &R.sig_usr1);
    ev_init(&R.tick, on_tick);
    ev_timer_set(&R.tick, 0, 0);
    ev_timer_start(R.loop, &R.tick);
    ev_run(R.loop, 0);
    rh_fatal("reaper event loop ended unexpectedly");
}
