/*
 * rb_modes.c - the measurements: insert, drain, trickle, scale, bloat.
 *
 * Every measurement starts from empty job tables (TRUNCATE; rhino-bench
 * refuses a database holding other jobs), ends with a check that every job
 * it enqueued ended completed exactly once (or, in scale mode, is still
 * waiting), and writes one record: a block of the table for people and one
 * JSON line with the parameters, the results and the facts of the machine
 * and server.  docs/benchmarks.md defines each figure; the comments here
 * say how it is taken.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rh_sql.h"
#include "rb_facts.h"
#include "rb_load.h"
#include "rb_modes.h"
#include "rb_pg.h"
#include "rb_report.h"
#include "rb_rhino.h"
#include "rb_util.h"

/*
 * How often the harness asks whether rhino is done.  The peers' benchmarks
 * poll every 10 ms; here each poll cost the server about 2 ms of CPU in a
 * busy drain (it walks past the jobs claimed by transactions in flight in
 * jobs_claim, and, before schema version 11, in the history's primary key;
 * now it reads the max_id of the history's few batch rows), and at 10 ms
 * that was 8% of the server's time taken from the rhino being measured.  At
 * 25 ms the end of a drain is known to within 25 ms: 0.4% of a 6 s drain.
 */
#define RB_POLL 0.025
/* Seconds without any job finishing after which a drain is declared stuck. */
#define RB_STALL 60

/* ---- printing -------------------------------------------------------------- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
    va_list ap;

    rb_progress_clear();
    va_start(ap, fmt);
    vfprintf(rb_out(), fmt, ap);
    va_end(ap);
    fflush(rb_out());
}

static const char *
fmt_bytes(char *buf, size_t size, double b)
{
    if (b >= 1024.0 * 1024 * 1024)
        snprintf(buf, size, "%.2f GB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024)
        snprintf(buf, size, "%.1f MB", b / (1024.0 * 1024));
    else
        snprintf(buf, size, "%.0f kB", b / 1024.0);
    return buf;
}

/* ---- records --------------------------------------------------------------- */

static void
record_begin(rb_json_t *j, const rb_opts_t *o, const char *measurement)
{
    char      at[32];
    time_t    now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    memset(j, 0, sizeof(*j));
    rb_json_begin(j, NULL);
    rb_json_str(j, "tool", "rhino-bench");
    rb_json_str(j, "version", PACKAGE_VERSION);
    rb_json_str(j, "at", at);
    rb_json_str(j, "label", o->label);
    rb_json_str(j, "mode", o->mode);
    rb_json_str(j, "measurement", measurement);
}

/* The parameters of the rhino under test, inside "params". */
static void
params_rhino(rb_json_t *j, const rb_opts_t *o, long long workers, long long batch)
{
    rb_json_int(j, "workers", workers);
    rb_json_int(j, "batch", batch);
    rb_json_num(j, "retention_s", o->retention, 3);
    rb_json_bool(j, "metrics", o->metrics);
    rb_json_bool(j, "analyze", o->analyze);
    rb_json_begin_array(j, "set");
    for (size_t i = 0; i < o->nsets; i++)
        rb_json_str(j, NULL, o->sets[i]);
    rb_json_end_array(j);
    rb_json_str(j, "queue", o->queue);
    rb_json_str(j, "rhino", rb_rhino_path());
    rb_json_str(j, "handlers", rb_rhino_handlers());
}

static void
record_end(rb_json_t *j)
{
    rb_facts_json(j);
    rb_json_end(j);
    rb_report_record(j);
}

/* ---- the database around a measurement --------------------------------------- */

static void
conf_of(const rb_opts_t *o, rb_rhino_conf_t *c, long long workers, long long batch, const char *stamp)
{
    memset(c, 0, sizeof(*c));
    c->dsn = o->dsn;
    c->queue = o->queue;
    c->workers = (int) workers;
    c->batch = (int) batch;
    c->retention = o->retention;
    c->metrics = o->metrics;
    c->sets = o->sets;
    c->nsets = o->nsets;
    c->stamp_file = stamp;
}

static void
reset(rb_opts_t *o)
{
    rb_pg_do(o->conn, RB_SQL_RESET, NULL);
}

/*
 * After a load: ANALYZE (a fresh table has no statistics, and the steady
 * state is what is measured) and CHECKPOINT (the load's dirty pages are not
 * the drain's to write).  A role that may not CHECKPOINT is told once.
 */
static void
settle(rb_opts_t *o)
{
    static int refused;
    char       err[512];

    if (o->analyze)
        rb_pg_do(o->conn, RB_SQL_ANALYZE, NULL);
    if (!refused && rb_pg_try(o->conn, RB_SQL_CHECKPOINT, NULL, err, sizeof(err)) < 0) {
        rb_warn("CHECKPOINT refused (%s); measuring without one: the numbers may include the load's writes", err);
        refused = 1;
    }
}

typedef struct {
    long long completed;    /* in rhino.jobs_done as completed; -1 when [retention] completed = 0 keeps none */
    long long other;        /* in rhino.jobs_done otherwise (discarded, cancelled): should be none */
    long long left;         /* still in rhino.jobs */
    long long running;      /* of those, not 'available' (claimed and never handed back) */
} rb_counts_t;

static void
counts(rb_opts_t *o, rb_counts_t *c)
{
    const char *p[1] = { o->queue };
    PGresult   *res = rb_pg_run(o->conn, RB_SQL_COUNTS, p);

    c->completed = o->retention > 0 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -1;
    c->other = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    c->left = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    c->running = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    PQclear(res);
}

/*
 * Did every job end as it should?  expected jobs were enqueued; left_ok
 * of them may still wait in rhino.jobs (scale mode stops early), all
 * 'available'.  Writes "check" into j; returns 1 if all is well.
 */
static int
check(rb_json_t *j, const rb_counts_t *c, long long expected, long long left_ok)
{
    int ok = c->other == 0 && c->running == 0 && c->left <= left_ok &&
             (c->completed < 0 || c->completed + c->left == expected);
    char n1[32], n2[32];

    rb_json_begin(j, "check");
    rb_json_int(j, "expected", expected);
    if (c->completed >= 0)
        rb_json_int(j, "completed", c->completed);
    else
        rb_json_null(j, "completed");
    rb_json_int(j, "not_completed", c->other);
    rb_json_int(j, "left_in_jobs", c->left);
    rb_json_int(j, "left_running", c->running);
    rb_json_bool(j, "ok", ok);
    rb_json_end(j);
    if (ok) {
        if (c->completed >= 0)
            say("  check            %s completed exactly once, %s still queued\n",
                rb_fmt_int(n1, sizeof(n1), c->completed), rb_fmt_int(n2, sizeof(n2), c->left));
        else
            say("  check            none left ([retention] completed = 0 keeps no history to count)\n");
    } else {
        say("  check            FAILED: expected %lld; completed %lld, not completed %lld, left %lld "
            "(running %lld)\n", expected, c->completed, c->other, c->left, c->running);
    }
    return ok;
}

typedef struct {
    long long live, dead, table_bytes, index_bytes, vacuums;
} rb_table_t;

static void
table_stats(rb_opts_t *o, rb_table_t *jobs, rb_table_t *done)
{
    PGresult *res = rb_pg_run(o->conn, RB_SQL_TABLE_STATS, NULL);

    memset(jobs, 0, sizeof(*jobs));
    memset(done, 0, sizeof(*done));
    for (int i = 0; i < PQntuples(res); i++) {
        rb_table_t *t = strcmp(PQgetvalue(res, i, 0), "jobs") == 0 ? jobs : done;

        t->live = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        t->dead = strtoll(PQgetvalue(res, i, 2), NULL, 10);
        t->table_bytes = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        t->index_bytes = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        t->vacuums = strtoll(PQgetvalue(res, i, 5), NULL, 10);
    }
    PQclear(res);
}

static void
tables_out(rb_json_t *j, const char *key, const char *title, const rb_table_t *jobs, const rb_table_t *done)
{
    const rb_table_t *t[2] = { jobs, done };
    const char       *names[2] = { "jobs", "jobs_done" };
    char              a[32], b[32], c[32], d[32];

    rb_json_begin(j, key);
    for (int i = 0; i < 2; i++) {
        rb_json_begin(j, names[i]);
        rb_json_int(j, "n_live_tup", t[i]->live);
        rb_json_int(j, "n_dead_tup", t[i]->dead);
        rb_json_int(j, "table_bytes", t[i]->table_bytes);
        rb_json_int(j, "index_bytes", t[i]->index_bytes);
        rb_json_int(j, "vacuums", t[i]->vacuums);
        rb_json_end(j);
    }
    rb_json_end(j);
    say("  %s\n", title);
    say("    %-10s %14s %14s %12s %12s %8s\n", "table", "live tuples", "dead tuples", "table size", "index size",
        "vacuums");
    for (int i = 0; i < 2; i++)
        say("    %-10s %14s %14s %12s %12s %8lld\n", names[i], rb_fmt_int(a, sizeof(a), t[i]->live),
            rb_fmt_int(b, sizeof(b), t[i]->dead), fmt_bytes(c, sizeof(c), (double) t[i]->table_bytes),
            fmt_bytes(d, sizeof(d), (double) t[i]->index_bytes), t[i]->vacuums);
}

/* The server's clock (epoch seconds) and WAL position. */
static double
server_clock(rb_opts_t *o, char *lsn, size_t lsnlen)
{
    PGresult *res = rb_pg_run(o->conn, RB_SQL_CLOCK, NULL);
    double    t = strtod(PQgetvalue(res, 0, 0), NULL);

    snprintf(lsn, lsnlen, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    return t;
}

/* Push the harness's own statistics out and read the database's commit counter. */
static long long
xact_commits(rb_opts_t *o, long long *statements_before)
{
    rb_pg_do(o->conn, RB_SQL_FLUSH_STATS, NULL);
    *statements_before = rb_pg_statements;
    return rb_pg_int(o->conn, RB_SQL_XACT_COMMIT, NULL);
}

typedef struct {
    double t_issue;         /* rb_mono() when the poll that saw it done was sent */
    double server_epoch;    /* the server's clock in that poll */
    char   lsn[64];         /* the WAL position in that poll */
} rb_done_t;

/*
 * Poll until no job of the queue is available and none is running (or, with
 * last > 0, until jobs first..last have all left rhino.jobs).  The time kept
 * is when the successful poll was sent: the drain ended at or before it.
 */
static void
wait_done(rb_opts_t *o, rb_rhino_t *r, long long first, long long last, long long total, const char *label,
          rb_done_t *d)
{
    char        a[32], b[32], detail[96];
    const char *qp[1] = { o->queue };
    char        lo[32], hi[32];
    const char *rp[2] = { lo, hi };
    double      deadline = rb_mono() + o->timeout, moved = rb_mono();
    long long   seen = -1;

    snprintf(lo, sizeof(lo), "%lld", first);
    snprintf(hi, sizeof(hi), "%lld", last);
    for (;;) {
        double    t = rb_mono();
        PGresult *res = last > 0 ? rb_pg_run(o->conn, RB_SQL_RANGE_DONE, rp) : rb_pg_run(o->conn, RB_SQL_DRAIN_POLL, qp);
        int       done = strcmp(PQgetvalue(res, 0, last > 0 ? 1 : 2), "t") == 0;
        long long maxid = strtoll(PQgetvalue(res, 0, last > 0 ? 2 : 3), NULL, 10);

        if (done) {
            d->t_issue = t;
            d->server_epoch = strtod(PQgetvalue(res, 0, 0), NULL);
            snprintf(d->lsn, sizeof(d->lsn), "%s", last > 0 ? "" : PQgetvalue(res, 0, 1));
            PQclear(res);
            rb_progress_clear();
            return;
        }
        PQclear(res);
        rb_rhino_alive(r);
        rb_check_interrupt();
        if (t > deadline) {
            char what[128];

            snprintf(what, sizeof(what), "%s: not done after %.0f s (--timeout)", label, o->timeout);
            rb_rhino_fail(r, what);
        }
        /*
         * A rhino that runs but finishes nothing (a claim that keeps
         * failing, say) is not worth --timeout's wait: give up after a
         * minute without a single job finished, with its log.
         */
        if (maxid != seen) {
            seen = maxid;
            moved = t;
        } else if (o->retention > 0 && t - moved > RB_STALL) {
            char what[128];

            snprintf(what, sizeof(what), "%s: no job finished for %.0f s", label, (double) RB_STALL);
            rb_rhino_fail(r, what);
        }
        /* the history's newest id says roughly how far the drain got (the claim goes in id order) */
        if (o->retention > 0 && maxid >= first) {
            long long n = maxid - first + 1;
            snprintf(detail, sizeof(detail), "~%s of %s jobs", rb_fmt_int(a, sizeof(a), n),
                     rb_fmt_int(b, sizeof(b), total));
            rb_progress(label, (double) n / (double) total, detail);
        } else {
            rb_progress(label, -1, "");
        }
        rb_sleep(RB_POLL);
    }
}

/* ---- drain ----------------------------------------------------------------- */

typedef struct {
    long long   n;
    double      load_seconds;
    double      seconds;            /* rhino's start to the poll that saw the queue empty */
    double      first_claim_s;      /* first claim to that poll, server clock; NAN if unknown */
    double      startup_s;          /* just before the start to the first claim, server clock */
    double      cpu_user, cpu_sys;
    long long   wal_bytes;
    long long   commits;
    long long   round_trips;        /* -1: not on /metrics */
    rb_counts_t counts;
} rb_drain_t;

/*
 * Load n jobs, settle, start rhino, time it until the queue is empty, stop
 * it, and take the costs: its CPU (wait4's rusage covers every child it
 * reaped), WAL written, commits made (the database's counter less the
 * harness's own statements), round trips (rhino's own counter, if any).
 */
static void
drain_once(rb_opts_t *o, long long workers, long long batch, long long n, rb_drain_t *d)
{
    rb_rhino_conf_t conf;
    rb_rhino_t      r;
    rb_done_t       done;
    long long       first, last, xc0, xc1, own0, own1;
    char            wal0[64];
    const char     *qp[1] = { o->queue };
    double          clock0, first_claim;

    memset(d, 0, sizeof(*d));
    d->n = n;
    reset(o);
    d->load_seconds = rb_load_copy(o->conn, o->queue, "bench.noop", n, "load", &first, &last);
    settle(o);

    xc0 = xact_commits(o, &own0);
    clock0 = server_clock(o, wal0, sizeof(wal0));
    conf_of(o, &conf, workers, batch, NULL);
    rb_rhino_start(&r, &conf);
    wait_done(o, &r, first, 0, n, "drain", &done);
    d->seconds = done.t_issue - r.started;
    d->round_trips = rb_rhino_metric(&r, "rhino_db_round_trips_total");
    rb_rhino_stop(&r, o->timeout);
    d->cpu_user = (double) r.ru.ru_utime.tv_sec + (double) r.ru.ru_utime.tv_usec / 1e6;
    d->cpu_sys = (double) r.ru.ru_stime.tv_sec + (double) r.ru.ru_stime.tv_usec / 1e6;

    {
        const char *wp[2] = { done.lsn, wal0 };
        d->wal_bytes = rb_pg_int(o->conn, RB_SQL_WAL_DIFF, wp);
    }
    rb_rhino_wait_backends_gone(o->conn, 10);
    xc1 = xact_commits(o, &own1);
    d->commits = xc1 - xc0 - (own1 - own0);
    first_claim = rb_pg_float(o->conn, RB_SQL_FIRST_CLAIM, qp);
    d->first_claim_s = first_claim > 0 ? done.server_epoch - first_claim : NAN;
    d->startup_s = first_claim > 0 ? first_claim - clock0 : NAN;
    counts(o, &d->counts);
}

static void
drain_json(rb_json_t *j, const rb_drain_t *d)
{
    double n = (double) d->n;

    rb_json_int(j, "jobs", d->n);
    rb_json_num(j, "seconds", d->seconds, 4);
    rb_json_num(j, "jobs_per_s", n / d->seconds, 0);
    rb_json_num(j, "seconds_from_first_claim", d->first_claim_s, 4);
    rb_json_num(j, "jobs_per_s_from_first_claim", n / d->first_claim_s, 0);
    rb_json_num(j, "startup_s", d->startup_s, 4);
    rb_json_num(j, "load_seconds", d->load_seconds, 4);
    rb_json_num(j, "load_jobs_per_s", n / d->load_seconds, 0);
    rb_json_num(j, "cpu_user_s", d->cpu_user, 3);
    rb_json_num(j, "cpu_sys_s", d->cpu_sys, 3);
    rb_json_num(j, "cpu_us_per_job", (d->cpu_user + d->cpu_sys) * 1e6 / n, 3);
    rb_json_int(j, "wal_bytes", d->wal_bytes);
    rb_json_num(j, "wal_bytes_per_job", (double) d->wal_bytes / n, 1);
    rb_json_int(j, "commits", d->commits);
    rb_json_num(j, "commits_per_job", (double) d->commits / n, 5);
    if (d->round_trips >= 0) {
        rb_json_int(j, "round_trips", d->round_trips);
        rb_json_num(j, "round_trips_per_job", (double) d->round_trips / n, 5);
    } else {
        rb_json_null(j, "round_trips");
        rb_json_null(j, "round_trips_per_job");
    }
}

static void
drain_say(const rb_drain_t *d)
{
    char   a[32], b[32];
    double n = (double) d->n;

    say("  drain            %s jobs/s  (%.3f s from rhino's start", rb_fmt_int(a, sizeof(a), llround(n / d->seconds)),
        d->seconds);
    if (isfinite(d->first_claim_s) && d->first_claim_s > 0)
        say("; %s jobs/s from the first claim, start-up %.3f s)\n",
            rb_fmt_int(b, sizeof(b), llround(n / d->first_claim_s)), d->startup_s);
    else
        say(")\n");
    say("  load (COPY)      %s jobs/s  (%.3f s)\n", rb_fmt_int(a, sizeof(a), llround(n / d->load_seconds)),
        d->load_seconds);
    say("  rhino CPU        %.2f us/job  (user %.2f s + sys %.2f s, all its processes)\n",
        (d->cpu_user + d->cpu_sys) * 1e6 / n, d->cpu_user, d->cpu_sys);
    say("  WAL              %.0f bytes/job  (%s bytes)\n", (double) d->wal_bytes / n,
        rb_fmt_int(a, sizeof(a), d->wal_bytes));
    say("  commits          %.4f per job  (%lld)\n", (double) d->commits / n, d->commits);
    if (d->round_trips >= 0)
        say("  round trips      %.4f per job  (%lld)\n", (double) d->round_trips / n, d->round_trips);
    else
        say("  round trips      n/a  (rhino's /metrics has no rhino_db_round_trips_total%s)\n", "");
}

int
rb_mode_drain(rb_opts_t *o)
{
    int  failed = 0;
    char a[32];

    for (int rep = 1; rep <= o->reps; rep++) {
        for (size_t wi = 0; wi < o->nworkers; wi++) {
            for (size_t bi = 0; bi < o->nbatches; bi++) {
                rb_drain_t d;
                rb_json_t  j;

                rb_check_interrupt();
                say("\ndrain: %s jobs, %lld worker(s), batch %lld\n", rb_fmt_int(a, sizeof(a), o->n),
                    o->workers[wi], o->batches[bi]);
                if (o->reps > 1)
                    say("  repetition       %d of %d\n", rep, o->reps);
                drain_once(o, o->workers[wi], o->batches[bi], o->n, &d);
                drain_say(&d);
                record_begin(&j, o, "drain");
                rb_json_begin(&j, "params");
                rb_json_int(&j, "n", o->n);
                rb_json_int(&j, "rep", rep);
                params_rhino(&j, o, o->workers[wi], o->batches[bi]);
                rb_json_end(&j);
                rb_json_begin(&j, "result");
                drain_json(&j, &d);
                failed |= !check(&j, &d.counts, o->n, 0);
                rb_json_end(&j);
                record_end(&j);
            }
        }
    }
    return failed;
}

/* ---- insert ---------------------------------------------------------------- */

/*
 * After an insert measurement, rhino runs what was inserted (not timed):
 * that the jobs are complete enough to run is part of inserting them.
 */
static void
run_all(rb_opts_t *o, long long first, long long n, rb_counts_t *c)
{
    rb_rhino_conf_t conf;
    rb_rhino_t      r;
    rb_done_t       done;

    conf_of(o, &conf, o->workers[0], o->batches[0], NULL);
    rb_rhino_start(&r, &conf);
    wait_done(o, &r, first, 0, n, "run them", &done);
    rb_rhino_stop(&r, o->timeout);
    counts(o, c);
}

/*
 * The end of one insert measurement: its line in the table, rhino running
 * what was inserted, the record.  how: INSERT_COPY, INSERT_CAPI or
 * INSERT_SQL, whose parameters go into the record.  Returns 1 if the check
 * passed.
 */
enum { INSERT_COPY, INSERT_CAPI, INSERT_SQL };

static int
insert_done(rb_opts_t *o, int rep, const char *measurement, int how, long long first, double s)
{
    rb_counts_t c;
    rb_json_t   j;
    char        a[32];
    int         ok;

    say("  insert           %s jobs/s  (%.3f s)\n", rb_fmt_int(a, sizeof(a), llround((double) o->n / s)), s);
    run_all(o, first, o->n, &c);
    record_begin(&j, o, measurement);
    rb_json_begin(&j, "params");
    rb_json_int(&j, "n", o->n);
    rb_json_int(&j, "rep", rep);
    if (how == INSERT_SQL) {
        rb_json_int(&j, "clients", o->clients);
        rb_json_int(&j, "tx", o->tx);
        rb_json_bool(&j, "pipeline", o->pipeline);
        rb_json_bool(&j, "prepared", o->prepare);
        rb_json_str(&j, "statement", rb_pg_sql(RB_SQL_ENQUEUE));
    } else if (how == INSERT_CAPI) {
        rb_json_str(&j, "api", "rhino_enqueue_many");
        rb_json_int(&j, "per_call", o->per_call);
        rb_json_bool(&j, "ids", 0);
    } else {
        rb_json_str(&j, "statement", rh_sql(RH_STMT_CTL_COPY_MIN)->sql);
    }
    params_rhino(&j, o, o->workers[0], o->batches[0]);
    rb_json_end(&j);
    rb_json_begin(&j, "result");
    rb_json_int(&j, "jobs", o->n);
    rb_json_num(&j, "seconds", s, 4);
    rb_json_num(&j, "jobs_per_s", (double) o->n / s, 0);
    ok = check(&j, &c, o->n, 0);
    rb_json_end(&j);
    record_end(&j);
    return ok;
}

int
rb_mode_insert(rb_opts_t *o)
{
    int  failed = 0;
    char a[32];

    for (int rep = 1; rep <= o->reps; rep++) {
        rb_sql_load_t l = { o->dsn, o->queue, "bench.noop", o->n, o->clients, o->tx, o->pipeline, o->prepare };
        long long     first, last;
        double        s;

        /* COPY: rhinoctl enqueue --bulk's statement, one transaction */
        rb_check_interrupt();
        say("\ninsert (COPY): %s jobs in one transaction\n", rb_fmt_int(a, sizeof(a), o->n));
        reset(o);
        settle(o);
        s = rb_load_copy(o->conn, o->queue, "bench.noop", o->n, "insert copy", &first, &last);
        failed |= !insert_done(o, rep, "copy", INSERT_COPY, first, s);

        /* the C API: librhino's rhino_enqueue_many() (its COPY path: no unique keys) */
        rb_check_interrupt();
        say("\ninsert (C API rhino_enqueue_many): %s jobs, %d per call, each call a transaction\n",
            rb_fmt_int(a, sizeof(a), o->n), o->per_call);
        reset(o);
        settle(o);
        s = rb_load_capi(o->conn, o->queue, "bench.noop", o->n, o->per_call, "insert C API", &first);
        failed |= !insert_done(o, rep, "capi", INSERT_CAPI, first, s);

        /* rhino.enqueue() from concurrent clients, in transactions of tx calls */
        rb_check_interrupt();
        say("\ninsert (SQL rhino.enqueue): %s jobs, %d client(s), %d calls per transaction%s%s\n",
            rb_fmt_int(a, sizeof(a), o->n), o->clients, o->tx, o->pipeline ? ", pipelined" : "", o->prepare ? ", prepared" : ", unnamed");
        reset(o);
        settle(o);
        /* the clients' jobs get the ids after the sequence's last (the progress bar counts from there) */
        first = rb_pg_int(o->conn, RB_SQL_SEQ_LAST, NULL) + 1;
        s = rb_load_sql(&l);
        failed |= !insert_done(o, rep, "sql_enqueue", INSERT_SQL, first, s);
    }
    return failed;
}

/* ---- trickle --------------------------------------------------------------- */

static void
latency_out(rb_json_t *j, const char *key, const char *title, int64_t *v, size_t n, int quantiles)
{
    double mean = 0;

    if (n == 0) {
        rb_json_null(j, key);
        say("  %-16s n/a\n", title);
        return;
    }
    rb_sort_i64(v, n);
    for (size_t i = 0; i < n; i++)
        mean += (double) v[i];
    mean /= (double) n;
    rb_json_begin(j, key);
    rb_json_int(j, "count", (long long) n);
    rb_json_num(j, "p50_ms", (double) rb_percentile(v, n, 50) / 1000.0, 3);
    rb_json_num(j, "p90_ms", (double) rb_percentile(v, n, 90) / 1000.0, 3);
    rb_json_num(j, "p99_ms", (double) rb_percentile(v, n, 99) / 1000.0, 3);
    rb_json_num(j, "max_ms", (double) v[n - 1] / 1000.0, 3);
    rb_json_num(j, "mean_ms", mean / 1000.0, 3);
    if (quantiles) {
        /* 0th..100th percentile: enough to draw the CDF without shipping every sample */
        rb_json_begin_array(j, "quantiles_ms");
        rb_json_num(j, NULL, (double) v[0] / 1000.0, 3);
        for (int p = 1; p <= 100; p++)
            rb_json_num(j, NULL, (double) rb_percentile(v, n, p) / 1000.0, 3);
        rb_json_end_array(j);
    }
    rb_json_end(j);
    say("  %-16s p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (%zu jobs)\n", title,
        (double) rb_percentile(v, n, 50) / 1000.0, (double) rb_percentile(v, n, 90) / 1000.0,
        (double) rb_percentile(v, n, 99) / 1000.0, (double) v[n - 1] / 1000.0, n);
}

/* A growable vector of microsecond samples. */
typedef struct {
    int64_t *v;
    size_t   n, cap;
} rb_samples_t;

static void
samples_add(rb_samples_t *s, int64_t x)
{
    if (s->n == s->cap) {
        int64_t *g = realloc(s->v, (s->cap = s->cap ? 2 * s->cap : 1024) * sizeof(*g));
        if (g == NULL)
            rb_die("out of memory");
        s->v = g;
    }
    s->v[s->n++] = x;
}

/*
 * The stamp file's "t latency i" lines with t >= cutoff: the pickup
 * latencies, and, for the jobs whose enqueue returned (acked_us[i]), the
 * enqueue call's own time (its commit included) and the time from there to
 * the handler (what is Rhino's: the notification, the wake-up, the claim
 * and its commit).  *lines gets how many lines there were in all.
 */
static void
read_stamps(const char *path, int64_t cutoff, const rb_trickle_result_t *tr, rb_samples_t *pick,
            rb_samples_t *call, rb_samples_t *after, long long *lines)
{
    FILE     *fp = fopen(path, "r");
    char      buf[128];
    long long t, lat, i;

    *lines = 0;
    if (fp == NULL)
        return;                 /* no job ran: the check reports it */
    while (fgets(buf, sizeof(buf), fp) != NULL) {
        int got = sscanf(buf, "%lld %lld %lld", &t, &lat, &i);

        if (got < 2)
            continue;
        (*lines)++;
        if (t < cutoff)
            continue;
        samples_add(pick, lat);
        if (got == 3 && i >= 0 && i < tr->total && tr->acked_us[i] > 0) {
            samples_add(call, tr->acked_us[i] - t);
            samples_add(after, t + lat - tr->acked_us[i]);
        }
    }
    fclose(fp);
}

int
rb_mode_trickle(rb_opts_t *o)
{
    int  failed = 0;

    for (int rep = 1; rep <= o->reps; rep++) {
        rb_rhino_conf_t     conf;
        rb_rhino_t          r;
        rb_trickle_t        t = { o->dsn, o->queue, o->rate, o->seconds, o->clients, o->prepare };
        rb_trickle_result_t tr;
        rb_counts_t         c;
        rb_json_t           j;
        char                stamp[4200], cut[32];
        const char         *kp[2] = { o->queue, "bench.stamp" };
        const char         *lp[2] = { o->queue, cut };
        int64_t             cutoff, *comp;
        rb_samples_t        pick = { 0 }, call = { 0 }, after = { 0 };
        size_t              ncomp = 0;
        long long           stamped;
        double              deadline;

        rb_check_interrupt();
        say("\ntrickle: %.0f jobs/s for %.1f s (the first %.1f s not counted), %lld worker(s), batch %lld, "
            "rhino.enqueue() %s\n", o->rate, o->seconds, o->warmup, o->workers[0], o->batches[0],
            o->prepare ? "prepared" : "unnamed");
        reset(o);
        /*
         * The writes of whatever ran before (a drain, a bulk insert) are
         * not the trickle's to flush: a checkpoint that lands in the window
         * slows every commit's WAL flush and shows as a p99 of 10-20 ms.
         */
        settle(o);
        snprintf(stamp, sizeof(stamp), "%s/stamps-%d-%d.txt", rb_tmpdir(), rep, (int) time(NULL));
        conf_of(o, &conf, o->workers[0], o->batches[0], stamp);
        rb_rhino_start(&r, &conf);
        rb_rhino_wait_workers(&r, o->conn, (int) o->workers[0], 30);
        rb_sleep(0.3);          /* the workers' first empty claims are over: idle, as in production */
        rb_load_trickle(&t, &tr);

        deadline = rb_mono() + o->timeout;
        while (!rb_pg_bool(o->conn, RB_SQL_KIND_DONE, kp)) {
            rb_rhino_alive(&r);
            rb_check_interrupt();
            if (rb_mono() > deadline)
                rb_die("trickle: jobs still unfinished %.0f s after the last enqueue; rhino's log is %s",
                       o->timeout, r.log);
            rb_sleep(RB_POLL);
        }
        rb_rhino_stop(&r, o->timeout);
        counts(o, &c);

        cutoff = tr.t0_us + (int64_t) (o->warmup * 1e6);
        read_stamps(stamp, cutoff, &tr, &pick, &call, &after, &stamped);
        say("  enqueued         %lld jobs, %.1f/s achieved, %lld sent late (> 1 ms after their slot)\n",
            tr.sent, (double) tr.sent / tr.elapsed, tr.late);
        /* the latencies start before the call, so slow enqueues are in them: say so where it happened */
        if (tr.late * 20 > tr.sent)
            say("  note             %lld of %lld enqueues found no free connection at their slot: the calls "
                "took longer than --clients/--rate (%.1f ms); their time is part of the latencies below\n",
                tr.late, tr.sent, 1000.0 * o->clients / o->rate);

        record_begin(&j, o, "trickle");
        rb_json_begin(&j, "params");
        rb_json_num(&j, "rate", o->rate, 3);
        rb_json_num(&j, "seconds", o->seconds, 3);
        rb_json_num(&j, "warmup_s", o->warmup, 3);
        rb_json_int(&j, "clients", o->clients);
        rb_json_bool(&j, "prepared", o->prepare);
        rb_json_int(&j, "rep", rep);
        params_rhino(&j, o, o->workers[0], o->batches[0]);
        rb_json_end(&j);
        rb_json_begin(&j, "result");
        rb_json_int(&j, "sent", tr.sent);
        rb_json_int(&j, "late", tr.late);
        rb_json_num(&j, "achieved_rate", (double) tr.sent / tr.elapsed, 1);
        rb_json_int(&j, "stamped", stamped);
        latency_out(&j, "pickup", "enqueue->handler", pick.v, pick.n, 1);
        /*
         * The pickup split where the producer's commit returns: the first
         * part is the enqueue transaction itself (on this VM an INSERT and
         * its commit take 0.7-0.9 ms at 500/s, idle CPUs waking included),
         * the second is what Rhino adds.  The second can be slightly
         * negative: the listener may hear of the commit before the producer.
         */
        latency_out(&j, "enqueue_call", "  enqueue call", call.v, call.n, 0);
        latency_out(&j, "after_commit", "  after commit", after.v, after.n, 1);
        if (o->retention > 0) {
            PGresult *res;

            snprintf(cut, sizeof(cut), "%lld", (long long) cutoff);
            res = rb_pg_run(o->conn, RB_SQL_COMPLETION_LATENCY, lp);
            ncomp = (size_t) PQntuples(res);
            comp = rb_xmalloc((ncomp ? ncomp : 1) * sizeof(*comp));
            for (size_t i = 0; i < ncomp; i++)
                comp[i] = strtoll(PQgetvalue(res, (int) i, 0), NULL, 10);
            PQclear(res);
            latency_out(&j, "completion", "enqueue->finalize", comp, ncomp, 1);
            free(comp);
        } else {
            rb_json_null(&j, "completion");
            say("  %-16s n/a ([retention] completed = 0 keeps no finished_at)\n", "enqueue->finalize");
        }
        /* one stamp per job: a job run twice, or never, shows here */
        failed |= !check(&j, &c, tr.sent, 0);
        if (stamped != tr.sent) {
            say("  check            FAILED: %lld jobs enqueued but %lld handler runs stamped\n", tr.sent, stamped);
            failed = 1;
        }
        rb_json_end(&j);
        record_end(&j);
        free(pick.v);
        free(call.v);
        free(after.v);
        free(tr.acked_us);
    }
    return failed;
}

/* ---- scale ----------------------------------------------------------------- */

int
rb_mode_scale(rb_opts_t *o)
{
    double rates[RB_MAX_LIST] = { 0 };
    int    failed = 0;
    char   a[32], b[32];

    for (size_t si = 0; si < o->nsizes; si++) {
        long long       size = o->sizes[si], first, last, k = o->first < size ? o->first : size;
        rb_rhino_conf_t conf;
        rb_rhino_t      r;
        rb_done_t       done;
        rb_counts_t     c;
        rb_json_t       j;
        double          load, seconds;

        rb_check_interrupt();
        say("\nscale: the first %s of %s queued jobs, %lld worker(s), batch %lld\n", rb_fmt_int(a, sizeof(a), k),
            rb_fmt_int(b, sizeof(b), size), o->workers[0], o->batches[0]);
        reset(o);
        load = rb_load_copy(o->conn, o->queue, "bench.noop", size, "load", &first, &last);
        rb_pg_do(o->conn, RB_SQL_VACUUM, NULL);
        settle(o);
        conf_of(o, &conf, o->workers[0], o->batches[0], NULL);
        rb_rhino_start(&r, &conf);
        /* the claim takes jobs in (priority, run_at, id) order; all share priority and run_at */
        wait_done(o, &r, first, first + k - 1, k, "scale", &done);
        seconds = done.t_issue - r.started;
        rb_rhino_stop(&r, o->timeout);
        counts(o, &c);
        rates[si] = (double) k / seconds;
        say("  drain            %s jobs/s  (%.3f s for the first %s, from rhino's start)\n",
            rb_fmt_int(a, sizeof(a), llround(rates[si])), seconds, rb_fmt_int(b, sizeof(b), k));

        record_begin(&j, o, "scale");
        rb_json_begin(&j, "params");
        rb_json_int(&j, "queued", size);
        rb_json_int(&j, "first", k);
        params_rhino(&j, o, o->workers[0], o->batches[0]);
        rb_json_end(&j);
        rb_json_begin(&j, "result");
        rb_json_int(&j, "jobs", k);
        rb_json_num(&j, "seconds", seconds, 4);
        rb_json_num(&j, "jobs_per_s", rates[si], 0);
        rb_json_num(&j, "load_seconds", load, 4);
        failed |= !check(&j, &c, size, size - k);
        rb_json_end(&j);
        record_end(&j);
    }

    /* the summary: the rate at the largest size against the smallest */
    {
        size_t    lo = 0, hi = 0;
        rb_json_t j;

        for (size_t i = 1; i < o->nsizes; i++) {
            if (o->sizes[i] < o->sizes[lo])
                lo = i;
            if (o->sizes[i] > o->sizes[hi])
                hi = i;
        }
        char      c[32], d[32];

        say("\nscale: %s jobs/s with %s queued / %s jobs/s with %s queued = %.3f\n",
            rb_fmt_int(a, sizeof(a), llround(rates[hi])), rb_fmt_int(b, sizeof(b), o->sizes[hi]),
            rb_fmt_int(c, sizeof(c), llround(rates[lo])), rb_fmt_int(d, sizeof(d), o->sizes[lo]),
            rates[hi] / rates[lo]);
        record_begin(&j, o, "scale_summary");
        rb_json_begin(&j, "params");
        rb_json_begin_array(&j, "sizes");
        for (size_t i = 0; i < o->nsizes; i++)
            rb_json_int(&j, NULL, o->sizes[i]);
        rb_json_end_array(&j);
        rb_json_int(&j, "first", o->first);
        params_rhino(&j, o, o->workers[0], o->batches[0]);
        rb_json_end(&j);
        rb_json_begin(&j, "result");
        rb_json_begin_array(&j, "jobs_per_s");
        for (size_t i = 0; i < o->nsizes; i++)
            rb_json_num(&j, NULL, rates[i], 0);
        rb_json_end_array(&j);
        rb_json_num(&j, "ratio_largest_to_smallest", rates[hi] / rates[lo], 4);
        rb_json_end(&j);
        record_end(&j);
    }
    return failed;
}

/* ---- bloat ----------------------------------------------------------------- */

int
rb_mode_bloat(rb_opts_t *o)
{
    rb_drain_t      d;
    rb_table_t      tj, td;
    rb_json_t       j;
    rb_rhino_conf_t conf;
    rb_rhino_t      r;
    rb_done_t       done;
    rb_counts_t     c;
    PGconn         *hold;
    char            a[32], b[32], e[32], lsn[64], ws_s[32], we_s[32], detail[96];
    const char     *qp[3] = { o->queue, ws_s, we_s };
    long long       workers = o->workers[0], batch = o->batches[0];
    long long       low = 2 * workers * batch, high = 4 * workers * batch;
    long long       enqueued = 0, first, last, top_first = 0, in_window;
    double          ws, we, t0;
    int             failed = 0;

    /* 1: a drain of n, then what it left behind, once rhino's backends have flushed their statistics */
    rb_check_interrupt();
    say("\nbloat: a drain of %s jobs, %lld worker(s), batch %lld\n", rb_fmt_int(a, sizeof(a), o->n), workers, batch);
    drain_once(o, workers, batch, o->n, &d);
    drain_say(&d);
    table_stats(o, &tj, &td);
    record_begin(&j, o, "after_drain");
    rb_json_begin(&j, "params");
    rb_json_int(&j, "n", o->n);
    params_rhino(&j, o, workers, batch);
    rb_json_end(&j);
    rb_json_begin(&j, "result");
    drain_json(&j, &d);
    tables_out(&j, "tables", "after the drain:", &tj, &td);
    failed |= !check(&j, &d.counts, o->n, 0);
    rb_json_end(&j);
    record_end(&j);

    /*
     * 2: the same tables, rhino running, jobs enqueued whenever the backlog
     * runs low, while another session holds a REPEATABLE READ snapshot: no
     * row version that dies from now on can be vacuumed away.
     */
    rb_check_interrupt();
    say("\nbloat: %.0f s with a snapshot held open, jobs enqueued and drained throughout\n", o->window);
    conf_of(o, &conf, workers, batch, NULL);
    rb_rhino_start(&r, &conf);
    rb_rhino_wait_workers(&r, o->conn, (int) workers, 30);
    hold = rb_pg_connect(o->dsn);
    rb_pg_do(hold, RB_SQL_HOLD_BEGIN, NULL);
    rb_pg_do(hold, RB_SQL_HOLD_READ, NULL);

    ws = server_clock(o, lsn, sizeof(lsn));
    t0 = rb_mono();
    last = 0;
    while (rb_mono() - t0 < o->window) {
        /* the backlog, from the newest finished id: one descent of a primary key, whatever the bloat */
        long long maxdone = rb_pg_int(o->conn, RB_SQL_DONE_MAX_ID, NULL);
        long long backlog = last > 0 ? last - maxdone : 0;

        rb_rhino_alive(&r);
        rb_check_interrupt();
        if (backlog < low) {
            rb_load_copy(o->conn, o->queue, "bench.noop", high - backlog, NULL, &first, &last);
            if (top_first == 0)
                top_first = first;
            enqueued += high - backlog;
        }
        snprintf(detail, sizeof(detail), "%s enqueued, backlog ~%s", rb_fmt_int(a, sizeof(a), enqueued),
                 rb_fmt_int(b, sizeof(b), backlog));
        rb_progress("held snapshot", (rb_mono() - t0) / o->window, detail);
        rb_sleep(0.02);
    }
    we = server_clock(o, lsn, sizeof(lsn));
    table_stats(o, &tj, &td);

    /* release, let rhino finish what is queued, stop it */
    rb_pg_do(hold, RB_SQL_COMMIT, NULL);
    PQfinish(hold);
    wait_done(o, &r, top_first, 0, enqueued, "finish", &done);
    rb_rhino_stop(&r, o->timeout);
    snprintf(ws_s, sizeof(ws_s), "%.6f", ws);
    snprintf(we_s, sizeof(we_s), "%.6f", we);
    in_window = o->retention > 0 ? rb_pg_int(o->conn, RB_SQL_DONE_BETWEEN, qp) : -1;
    counts(o, &c);

    record_begin(&j, o, "held_xmin");
    rb_json_begin(&j, "params");
    rb_json_int(&j, "n", o->n);
    rb_json_num(&j, "window_s", o->window, 3);
    rb_json_int(&j, "backlog_low", low);
    rb_json_int(&j, "backlog_high", high);
    params_rhino(&j, o, workers, batch);
    rb_json_end(&j);
    rb_json_begin(&j, "result");
    rb_json_num(&j, "window_seconds", we - ws, 4);
    rb_json_int(&j, "enqueued", enqueued);
    if (in_window >= 0) {
        rb_json_int(&j, "completed_in_window", in_window);
        rb_json_num(&j, "jobs_per_s", (double) in_window / (we - ws), 0);
        say("  drain            %s jobs/s during the window  (%s finished in %.1f s; %s enqueued)\n",
            rb_fmt_int(a, sizeof(a), llround((double) in_window / (we - ws))), rb_fmt_int(b, sizeof(b), in_window),
            we - ws, rb_fmt_int(e, sizeof(e), enqueued));
    } else {
        rb_json_null(&j, "completed_in_window");
        rb_json_null(&j, "jobs_per_s");
        say("  drain            n/a ([retention] completed = 0 keeps no finished_at to count)\n");
    }
    tables_out(&j, "tables_window_end", "at the end of the window (snapshot still held):", &tj, &td);
    rb_rhino_wait_backends_gone(o->conn, 10);
    rb_pg_do(o->conn, RB_SQL_FLUSH_STATS, NULL);
    table_stats(o, &tj, &td);
    tables_out(&j, "tables_after", "after release, the backlog drained and rhino stopped:", &tj, &td);
    /* the history holds the first drain's jobs too */
    failed |= !check(&j, &c, o->n + enqueued, 0);
    rb_json_end(&j);
    record_end(&j);
    return failed;
}
