/*
 * rh_reaper.c - the reaper: one connection, one periodic timer (the
 * PgBouncer janitor pattern).  Each pass:
 *
 *   1. every lease/3: renew the leases of this node's workers that the
 *      master sees alive and not stopped (so a long handler never loses its
 *      lease, and a SIGSTOPped worker or a vanished host does);
 *   2. crashes: jobs whose handler was running when its worker died get
 *      their crash counted (retry with backoff, or discard at max_crashes);
 *   3. reconcile: rows of this node's workers that the master's process
 *      table (shared memory) shows dead are marked ended;
 *   4. rescue: running jobs of ended workers, and of workers whose lease
 *      ran out (on any host), become available again, fenced by attempt;
 *   5. promote: scheduled and retryable jobs that are due become available;
 *   6. periodic jobs: fire the cron schedules that are due, each fire time
 *      exactly once however many hosts run (rh_schedule.c);
 *   7. every minute: prune finished jobs past [retention] and old schedule
 *      fire rows, forget old nodes.
 *
 * With [metrics] listen set, the queue gauges (depth, oldest job's age) are
 * counted on a second connection of the reaper's, sent without waiting and
 * read when the loop sees the answer.  The count stops at [metrics]
 * depth_limit per queue (RH_STMT_QUEUE_DEPTH): counting all of a 10M backlog
 * took 1.2 s on a quiet server and 4.4 s during a drain, held up the rescue
 * of a dead worker's jobs for that long when it ran on the pass's own
 * connection, and, in parallel on both cores, cut the drain at 10M jobs to
 * 0.61-0.66 of the drain at 250k.
 *
 * Every statement is safe to run from several hosts at once (SKIP LOCKED,
 * fenced updates), so no leader election is needed.  The master sends
 * SIGUSR1 when a worker dies, so its jobs are back within one round trip
 * instead of one interval.  Queries are synchronous: the reaper has nothing
 * else to do while one runs, and its signals are only noted by libev.
 */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>
#include <libpq-fe.h>

#include "rh_db.h"
#include "rh_limits.h"
#include "rh_log.h"
#include "rh_metrics.h"
#include "rh_proc.h"
#include "rh_reaper.h"
#include "rh_schedule.h"
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
    /*
     * rh_mono_now() of the last renewal, prune, ...: intervals on the
     * monotonic clock, never ev_now(), which follows the wall clock.  A
     * clock stepped back by NTP or a VM restore would otherwise stop the
     * renewals for as long as the step, and this node's own leases would
     * run out under handlers that still run.
     */
    double             last_renew, last_prune, last_depth, last_orphans, last_vacuum;
    int                vacuum_denied;   /* not the owner of rhino.jobs: said once, not tried again */
    double             depth_every;     /* seconds between queue depth counts */
    int                prune_behind;    /* the last prune left work: prune again next pass */
    double             reconnect_delay;
    int                schedules_synced;    /* the config's [schedule] sections are in the table */
    PGconn            *gconn;           /* the queue gauges' own connection ([metrics] listen) */
    ev_io              gio;             /* its answer */
    double             gsent;           /* when the count in flight was sent; 0: none in flight */
    int                gwarned;         /* its failure to connect was logged */
    char              *queues_lit;      /* [worker] queues as a text[] literal, for rhino.nodes.queues */
} R;

/* Run one statement; returns the result (caller clears) or NULL after logging. */
static PGresult *
r_exec(rh_stmt_id_t id, const char *const *params)
{
    return rh_db_exec(R.conn, id, params, NULL);
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

typedef struct {
    char s[RH_MAX_PROCESSES * 12 + 4];
    size_t len;
} int_list_t;

static void
list_add(int_list_t *l, int v)
{
    l->len += (size_t) snprintf(l->s + l->len, sizeof(l->s) - l->len, "%s%d", l->len > 1 ? "," : "", v);
}

static void
renew_leases(void)
{
    int_list_t  slots = { "{", 1 }, gens = { "{", 1 };
    char        lease[32];
    const char *p[5] = { R.node_s, lease, slots.s, gens.s, R.queues_lit };
    int         n = rh_shm_load(&R.shm->nslots);

    for (int i = 0; i < n; i++) {
        const rh_shm_slot_t *sl = &R.shm->slot[i];
        if (rh_shm_load(&sl->pid) != 0 && !rh_shm_load(&sl->stopped)) {
            list_add(&slots, i);
            list_add(&gens, rh_shm_load(&sl->generation));
        }
    }
    snprintf(slots.s + slots.len, sizeof(slots.s) - slots.len, "}");
    snprintf(gens.s + gens.len, sizeof(gens.s) - gens.len, "}");
    snprintf(lease, sizeof(lease), "%.3f", R.cfg->lease);
    if (r_exec_count(RH_STMT_LEASES_RENEW, p) >= 0)
        R.last_renew = rh_mono_now();
}

/*
 * Count the crashes the master reported, up to head (read after min_live);
 * a job whose worker the master killed at the stop's deadline is handed
 * back as interrupted instead, with no crash counted (RH_STMT_INTERRUPTED).
 */
static void
record_crashes(uint32_t head)
{
    uint32_t tail = rh_shm_load(&R.shm->report_tail);

    while (tail != head) {
        char        ids[64], atts[32], whys[300], maxc[16], base[32], maxd[32];
        const char *p[6] = { ids, atts, whys, maxc, base, maxd };
        const rh_shm_report_t *r = &R.shm->reports[tail % RH_SHM_REPORTS];
        PGresult   *res;
        char        esc[2 * sizeof(r->why) + 1], *o = esc;

        for (const char *c = r->why; *c; c++) {
            if (*c == '"' || *c == '\\')
                *o++ = '\\';
            *o++ = *c;
        }
        *o = '\0';
        snprintf(ids, sizeof(ids), "{%" PRId64 "}", r->job_id);
        snprintf(atts, sizeof(atts), "{%d}", r->attempt);
        snprintf(whys, sizeof(whys), "{\"%s\"}", esc);
        snprintf(maxc, sizeof(maxc), "%d", R.cfg->max_crashes);
        snprintf(base, sizeof(base), "%.3f", R.cfg->retry_base_delay);
        snprintf(maxd, sizeof(maxd), "%.3f", R.cfg->retry_max_delay);
        res = r_exec(r->interrupted ? RH_STMT_INTERRUPTED : RH_STMT_CRASHED, p);
        if (res == NULL)
            return;             /* retried next pass; the job stays running until then */
        if (r->interrupted) {
            if (atoi(PQgetvalue(res, 0, 1)) > 0)
                rh_log_info("job %" PRId64 " cancelled: %s", r->job_id, r->why);
            else if (atoi(PQgetvalue(res, 0, 0)) > 0)
                rh_log_warning("job %" PRId64 " (attempt %d) %s; available again", r->job_id, r->attempt, r->why);
        } else if (atoi(PQgetvalue(res, 0, 2)) > 0)
            rh_log_info("job %" PRId64 " cancelled: its worker was stopped while it ran (%s)", r->job_id, r->why);
        else if (atoi(PQgetvalue(res, 0, 0)) > 0)
            rh_log_error("job %" PRId64 " discarded: it crashed its worker %d time(s) ([worker] max_crashes)",
                         r->job_id, R.cfg->max_crashes);
        else if (atoi(PQgetvalue(res, 0, 1)) > 0)
            rh_log_warning("job %" PRId64 " (attempt %d) crash counted: %s; retried with backoff",
                           r->job_id, r->attempt, r->why);
        PQclear(res);
        tail++;
        rh_shm_store(&R.shm->report_tail, tail);
    }
}

/*
 * min_live is read before the report head: the master publishes a crash
 * report before it raises min_live, so a dead worker seen here has its
 * report seen too, and its crashed job is counted before the rescue below
 * makes its other jobs available.
 */
static void
reconcile(void)
{
    int_list_t  slots = { "{", 1 }, mins = { "{", 1 };
    const char *p[3] = { R.node_s, slots.s, mins.s };
    int         n = rh_shm_load(&R.shm->nslots);
    int         ended;

    for (int i = 0; i < n; i++) {
        list_add(&slots, i);
        list_add(&mins, rh_shm_load(&R.shm->slot[i].min_live));
    }
    snprintf(slots.s + slots.len, sizeof(slots.s) - slots.len, "}");
    snprintf(mins.s + mins.len, sizeof(mins.s) - mins.len, "}");
    record_crashes(rh_shm_load(&R.shm->report_head));
    ended = r_exec_count(RH_STMT_WORKERS_RECONCILE, p);
    if (ended > 0)
        rh_log_info("%d dead worker(s) marked ended", ended);
}

/* Seconds between two reads of the queue gauges (only with [metrics] listen set). */
#define RH_DEPTH_INTERVAL 2.0
#define RH_PRUNE_BATCH    5000  /* the LIMIT of RH_STMT_PRUNE and RH_STMT_PRUNE_ERRORS */
#define RH_PRUNE_BATCH_ROWS 5   /* the LIMIT of RH_STMT_PRUNE_BATCHES, in batch rows */

static rh_metric_queue_t *
depth_slot(rh_metrics_t *m, const char *name)
{
    for (int i = 0; i < m->nqueues; i++)
        if (strncmp(m->queues[i].name, name, RH_METRIC_NAME - 1) == 0)
            return &m->queues[i];
    if (m->nqueues == RH_METRIC_QUEUES)
        return NULL;
    snprintf(m->queues[m->nqueues].name, RH_METRIC_NAME, "%s", name);
    return &m->queues[m->nqueues++];
}

/*
 * Publish queue depth and the oldest job's age (res: RH_STMT_QUEUE_DEPTH)
 * under the seqlock that the master's renderer reads (rh_metrics.c).  A
 * queue once seen stays listed, at 0 when empty, so that a gauge drops to 0
 * instead of vanishing.
 */
static void
depth_publish(const PGresult *res)
{
    rh_metrics_t *m = rh_metrics;
    uint32_t      seq;

    seq = __atomic_load_n(&m->qseq, __ATOMIC_RELAXED);
    __atomic_store_n(&m->qseq, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (int i = 0; i < m->nqueues; i++) {
        m->queues[i].depth = 0;
        m->queues[i].oldest_age = 0;
    }
    for (int i = 0; i < R.cfg->nqueues; i++)
        depth_slot(m, R.cfg->queues[i]);
    for (int r = 0; r < PQntuples(res); r++) {
        rh_metric_queue_t *q = depth_slot(m, PQgetvalue(res, r, 0));
        double             age = strtod(PQgetvalue(res, r, 2), NULL);

        if (q == NULL)
            continue;           /* more than RH_METRIC_QUEUES queues: the rest are not shown */
        q->depth += strtoll(PQgetvalue(res, r, 1), NULL, 10);
        if (age > q->oldest_age)
            q->oldest_age = age;
    }
    m->qupdated = rh_mono_now();
    m->depth_limit = R.cfg->metrics_depth_limit;
    __atomic_store_n(&m->qseq, seq + 2, __ATOMIC_RELEASE);
}

/* The gauge connection failed: drop it; the next count connects again. */
static void
depth_close(const char *why)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "%s", why && *why ? why : "connection lost");
    msg[strcspn(msg, "\n")] = '\0';
    rh_log_warning("queue gauges: %s; the next count connects again", msg);
    ev_io_stop(R.loop, &R.gio);
    PQfinish(R.gconn);
    R.gconn = NULL;
    R.gsent = 0;
}

/* The count's answer, or part of it, arrived. */
static void
on_depth(struct ev_loop *loop, ev_io *w, int revents)
{
    PGresult *res;

    if (!PQconsumeInput(R.gconn)) {
        depth_close(rh_db_error(R.gconn, NULL));
        return;
    }
    while (!PQisBusy(R.gconn)) {
        double took;

        if ((res = PQgetResult(R.gconn)) != NULL) {
            if (PQresultStatus(res) == PGRES_TUPLES_OK)
                depth_publish(res);
            else
                rh_log_warning("queue gauges: %s", rh_db_error(R.gconn, res));
            PQclear(res);
            continue;
        }
        /*
         * Done.  Counting is linear in the backlog: keep it under 2% of
         * one core, so that the gauges never slow the drain they report on.
         */
        took = rh_mono_now() - R.gsent;
        R.depth_every = RH_DEPTH_INTERVAL;
        if (took * 50 > R.depth_every)
            R.depth_every = took * 50;
        ev_io_stop(loop, w);
        R.gsent = 0;
        return;
    }
}

/* Send the count on the gauge connection, unless one is still in flight. */
static void
queue_depth(void)
{
    char        err[1024], limit[16];
    const char *p[1];
    PGresult   *res;

    if (rh_metrics == NULL || R.gsent > 0)
        return;
    if (R.gconn != NULL && PQstatus(R.gconn) != CONNECTION_OK)
        depth_close(rh_db_error(R.gconn, NULL));
    if (R.gconn == NULL) {
        /* blocking, as the pass's own connect; said once until it works (retried at the next count) */
        if ((R.gconn = rh_db_connect(R.cfg->dsn, "reaper gauges", err, sizeof(err))) == NULL) {
            if (!R.gwarned)
                rh_log_warning("queue gauges: %s; retrying", err);
            R.gwarned = 1;
            return;
        }
        R.gwarned = 0;
        if ((res = rh_db_exec(R.gconn, RH_STMT_NO_PARALLEL, NULL, "queue gauges")) == NULL) {
            depth_close("its session setting failed (see above)");
            return;
        }
        PQclear(res);
        ev_io_init(&R.gio, on_depth, PQsocket(R.gconn), EV_READ);
    }
    /* a blocking connection sends the whole query; only the answer is awaited in the loop */
    snprintf(limit, sizeof(limit), "%d", R.cfg->metrics_depth_limit);
    p[0] = R.cfg->metrics_depth_limit > 0 ? limit : NULL;    /* NULL: LIMIT ALL */
    if (!PQsendQueryParams(R.gconn, rh_sql(RH_STMT_QUEUE_DEPTH)->sql, 1, NULL, p, NULL, NULL, 0)) {
        depth_close(rh_db_error(R.gconn, NULL));
        return;
    }
    R.gsent = rh_mono_now();
    ev_io_start(R.loop, &R.gio);
}

/*
 * Cancellations of running jobs (rhino.cancel): tell the slot whose handler
 * runs the job (the handler sees rhino_job_cancelled(), the master stops
 * the worker after [worker] cancel_grace), or, for a job claimed but not
 * started, put it in the ring that workers check before starting a job.
 * Polled each pass: half a second is quick enough to stop a job, and it
 * works with [database] listen = off and behind PgBouncer.
 */
static void
cancel_requests(void)
{
    const char *p[1] = { R.node_s };
    PGresult   *res = r_exec(RH_STMT_CANCEL_REQUESTS, p);

    if (res == NULL)
        return;
    for (int r = 0; r < PQntuples(res); r++) {
        int64_t        id = strtoll(PQgetvalue(res, r, 0), NULL, 10);
        int            slot = atoi(PQgetvalue(res, r, 2));
        int            gen = atoi(PQgetvalue(res, r, 3));
        rh_shm_slot_t *sl;

        if (slot < 0 || slot >= RH_MAX_PROCESSES)
            continue;
        sl = &R.shm->slot[slot];
        if (rh_shm_load(&sl->generation) == gen && rh_shm_load(&sl->job_id) == id) {
            if (rh_shm_load(&sl->cancel_job) != id) {
                rh_shm_store_d(&sl->cancel_at, rh_mono_now());
                rh_shm_store(&sl->cancel_job, id);
                rh_log_info("job %" PRId64 ": cancellation requested; its handler is told, and its worker "
                            "stopped if it still runs in %.0f s", id, R.cfg->cancel_grace);
            }
            continue;
        }
        rh_shm_cancel_add(R.shm, id);
    }
    PQclear(res);
}

/*
 * Run a retention statement that returns (rows deleted, jobs deleted) until
 * it deletes fewer than `full` rows or rh_mono_now() reaches `until`; add the
 * jobs to *jobs.  Returns 1 when the last one was full: more is due.
 */
static int
prune_until(rh_stmt_id_t id, const char *const *p, int full, double until, int *jobs)
{
    for (;;) {
        PGresult *res = r_exec(id, p);
        int       rows;

        if (res == NULL)
            return 0;
        rows = atoi(PQgetvalue(res, 0, 0));
        *jobs += atoi(PQgetvalue(res, 0, 1));
        PQclear(res);
        if (rows < full)
            return 0;
        if (rh_mono_now() >= until)
            return 1;
    }
}

#define RH_VACUUM_MIN_DEAD "1000"      /* fewer dead rows than this: nothing worth a VACUUM */
#define RH_VACUUM_MAX_ROWS "100000"    /* a larger rhino.jobs is left to autovacuum */

/* The hot table's VACUUM ([reaper] vacuum_interval; why: RH_STMT_VACUUM_DUE). */
static void
vacuum_hot(void)
{
    const char *p[2] = { RH_VACUUM_MIN_DEAD, RH_VACUUM_MAX_ROWS };
    PGresult   *res = r_exec(RH_STMT_VACUUM_DUE, p);
    double      t0;
    int         permitted, due;

    if (res == NULL)
        return;
    permitted = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    due = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    PQclear(res);
    if (!permitted) {
        rh_log_info("rhino's database role does not own rhino.jobs, so only autovacuum cleans it "
                    "([reaper] vacuum_interval needs the owner's privileges; set it to 0 to silence this)");
        R.vacuum_denied = 1;
        return;
    }
    if (!due)
        return;
    t0 = rh_mono_now();
    if (r_exec_count(RH_STMT_VACUUM_HOT, NULL) >= 0)
        rh_log_debug("vacuumed rhino.jobs in %.1f ms", (rh_mono_now() - t0) * 1000);
}

static void
pass(void)
{
    double now = rh_mono_now();
    int    n;

    if (r_connect() < 0)
        return;

    /* renewal first: after a long outage our own live workers must not look dead */
    if (now - R.last_renew >= R.cfg->lease / 3)
        renew_leases();
    reconcile();
    cancel_requests();
    n = r_exec_count(RH_STMT_RESCUE, NULL);
    /* running jobs whose worker row is gone: that reads every running job, so once a minute */
    if (now - R.last_orphans >= 60) {
        int o = r_exec_count(RH_STMT_RESCUE_ORPHANS, NULL);

        R.last_orphans = now;
        if (o > 0)
            n = (n > 0 ? n : 0) + o;
    }
    if (n > 0 && rh_metrics)
        __atomic_fetch_add(&rh_metrics->rescued, (uint64_t) n, __ATOMIC_RELAXED);
    if (n > 0)
        rh_log_warning("rescued %d job(s) of dead workers", n);
    r_exec_count(RH_STMT_PROMOTE, NULL);
    /* queue limits: the workers' limited flag, aging ticks, token buckets (rh_limits.c) */
    rh_limits_pass(R.conn, R.cfg, R.shm, now);
    /* periodic jobs: config schedules once per reaper (it restarts on SIGHUP), then what is due */
    if (!R.schedules_synced && rh_schedule_sync(R.conn, R.cfg) == 0)
        R.schedules_synced = 1;
    if ((n = rh_schedule_tick(R.conn, NULL)) > 0)
        rh_log_debug("enqueued %d scheduled job(s)", n);

    if (now - R.last_prune >= 60 || R.prune_behind) {
        char        c[32], d[32];
        const char *p[2] = { c, d };
        int         total = 0;
        double      t0 = rh_mono_now();

        R.last_prune = now;
        snprintf(c, sizeof(c), "%.3f", R.cfg->retention_completed);
        snprintf(d, sizeof(d), "%.3f", R.cfg->retention_discarded);
        /*
         * Batches of 5000, so that no statement holds locks for long, for
         * at most 0.2 s a pass.  A full last batch means more is due: the
         * next pass goes on instead of waiting a minute, so pruning keeps
         * up with a drain of tens of thousands of jobs a second (about
         * 100k rows a second at 0.2 s every 0.5 s).
         */
        R.prune_behind = prune_until(RH_STMT_PRUNE, p, RH_PRUNE_BATCH, t0 + 0.2, &total);
        /* completed jobs kept a batch to a row (sql/011_history_batches.sql): 5 rows a statement */
        R.prune_behind |= prune_until(RH_STMT_PRUNE_BATCHES, p, RH_PRUNE_BATCH_ROWS, t0 + 0.25, &total);
        while (r_exec_count(RH_STMT_PRUNE_ERRORS, p) == RH_PRUNE_BATCH && rh_mono_now() - t0 < 0.3)
            ;
        if (total > 0)
            rh_log_debug("pruned %d finished job(s) past retention", total);
        /* fire rows live as long as the history of the jobs they made (at least an hour) */
        for (int i = 0; i < 20 && rh_schedule_prune(R.conn, fmax(3600, fmax(R.cfg->retention_completed,
                                                                              R.cfg->retention_discarded))) > 0; i++)
            ;
        /* expired throttle windows (rhino.enqueue unique_for): nothing reads them any more */
        for (int i = 0; i < 20 && r_exec_count(RH_STMT_UNIQUE_PRUNE, NULL) > 0; i++)
            ;
        r_exec_count(RH_STMT_GC_NODES, NULL);
        if ((n = r_exec_count(RH_STMT_GC_WORKERS, NULL)) > 0)
            rh_log_debug("forgot %d ended worker row(s)", n);
    }
    if (R.cfg->vacuum_interval > 0 && !R.vacuum_denied && now - R.last_vacuum >= R.cfg->vacuum_interval) {
        R.last_vacuum = now;
        vacuum_hot();
    }
    if (R.cfg->metrics_listen && R.cfg->metrics_listen[0] && now - R.last_depth >= R.depth_every &&
        R.gsent == 0) {
        R.last_depth = now;
        queue_depth();          /* answered in on_depth, while the passes go on */
    }
    if (PQstatus(R.conn) != CONNECTION_OK) {
        rh_log_error("database connection lost; reconnecting");
        PQfinish(R.conn);
        R.conn = NULL;
        rh_shm_store(&R.shm->reaper_ready, 0);
        return;
    }
    rh_shm_store(&R.shm->reaper_ready, 1);
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
    if (rh_shm_load(&R.shm->reaper_last)) {
        const char *p[1] = { R.node_s };

        /* the master is going away: a last pass, then mark the node stopped */
        pass();
        if (R.conn && r_exec_count(RH_STMT_NODE_STOP, p) >= 0)
            rh_log_info("node %s stopped", R.node_s);
    }
    if (R.conn)
        PQfinish(R.conn);
    if (R.gconn)
        PQfinish(R.gconn);
    exit(RH_EXIT_OK);
}

void
rh_reaper_main(const rh_config_t *cfg, int64_t node_id, rh_shm_t *shm)
{
    memset(&R, 0, sizeof(R));
    /* never done: due at the first pass (the monotonic clock may read less than a minute after boot) */
    R.last_renew = R.last_prune = R.last_depth = R.last_orphans = R.last_vacuum = -INFINITY;
    R.cfg = cfg;
    R.node_id = node_id;
    R.shm = shm;
    snprintf(R.node_s, sizeof(R.node_s), "%" PRId64, node_id);
    if ((R.queues_lit = rh_db_text_array(cfg->queues, cfg->nqueues)) == NULL)
        rh_fatal("out of memory");
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
    {
        sigset_t s;     /* blocked since the fork (child_init): a SIGTERM sent meanwhile arrives now */

        sigemptyset(&s);
        sigaddset(&s, SIGTERM);
        sigaddset(&s, SIGINT);
        sigprocmask(SIG_UNBLOCK, &s, NULL);
    }
    ev_signal_init(&R.sig_usr1, on_usr1, SIGUSR1);
    ev_signal_start(R.loop, &R.sig_usr1);
    ev_init(&R.tick, on_tick);
    ev_timer_set(&R.tick, 0, 0);
    ev_timer_start(R.loop, &R.tick);
    ev_run(R.loop, 0);
    rh_fatal("reaper event loop ended unexpectedly");
}
