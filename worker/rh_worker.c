/*
 * rh_worker.c - a worker process: one libpq connection in non-blocking
 * pipeline mode on one libev loop; claims batches, runs the handlers,
 * finalizes the outcomes.
 *
 * The cycle.  A "round" is what the worker sends in one flush:
 *
 *     [finalize(outcomes of batch k-1)] [claim(batch k+1)] SYNC
 *
 * One sync segment, so one implicit transaction and one commit (one WAL
 * flush) per round instead of two (SEG_ROUND): both halves commit or
 * neither does.  If either fails, the outcomes go back to pending and the
 * next round carries them again with a new claim; the fence makes the replay
 * harmless.  A round with only one half (no outcomes yet, or a batch still
 * in hand) is a segment of its own.  As soon as the round is flushed the worker runs the
 * handlers of batch k, so the database works on the round while the handlers
 * run; when the round's results arrive, batch k+1 is in hand and the next
 * round carries batch k's outcomes.  At most one round is in flight: the
 * worker never queues unboundedly, and holds at most two batches.
 *
 * The fence.  Every claim increments attempt; finalize matches (id, attempt,
 * state = 'running').  An outcome is forgotten only once its segment's SYNC
 * arrives with no error before it: that is the commit confirmation.
 *
 * Early start.  A worker with nothing in hand asks for its next batch in a
 * claim-only segment and, with [worker] early_start on, a flush request
 * before the SYNC: the server sends the rows as soon as the claim has run
 * and commits while the worker already runs the batch's fast handlers
 * (transactional ones wait for the commit).  Their outcomes are marked
 * unconfirmed and are sent only after the SYNC arrives without error,
 * like every finalize; if the claim's transaction fails or the connection
 * breaks first, they are dropped and the jobs run again (the claim
 * committed: handed back by release_mine; it did not: still available).
 * So no finalize ever names a claim whose commit the worker did not see.
 * A round that also carries a finalize never starts early: a finalize
 * that failed would roll the claim back with it.
 *
 * Lost connection.  Outcomes in flight become pending again (replaying a
 * fenced finalize is harmless), the handlers of not-yet-started jobs are not
 * run, and after reconnecting the worker sends one transaction that replays
 * the finalizes and then hands back every other job still running under its
 * id, including those of a claim whose commit it never saw.
 *
 * Signals.  SIGTERM/SIGINT only set a flag and wake the loop (ev_async, which
 * is async-signal-safe).  The flag is also tested between two jobs of a
 * batch: the job in hand finishes, the rest are released unstarted.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>

#include <ev.h>
#include <libpq-fe.h>

#include "rh_backoff.h"
#include "rh_config.h"
#include "rh_db.h"
#include "rh_job.h"
#include "rh_loader.h"
#include "rh_log.h"
#include "rh_metrics.h"
#include "rh_proc.h"
#include "rh_sql.h"
#include "rh_worker.h"

/* what a result in the pipeline answers */
typedef enum {
    E_CLAIM,
    E_FINALIZE,
    E_RELEASE,
    E_RELEASE_MINE,
    E_REGISTER,
    E_ALIVE,
    E_END,
    E_JOB_STATES,
    E_PREPARE,      /* a statement's first use on this connection (send_query) */
    E_SETTING,      /* RH_STMT_PLANS_*: result ignored */
    E_SYNC
} rh_expect_kind_t;

/* which segment a sync closes */
typedef enum {
    SEG_SETUP,      /* first registration, or replay after reconnect */
    SEG_FINALIZE,
    SEG_CLAIM,
    SEG_FINAL,      /* drain: finalize + release + end, then exit */
    SEG_ROUND       /* finalize + claim in one transaction: one commit per round */
} rh_seg_t;

typedef struct {
    rh_expect_kind_t kind;
    rh_seg_t         seg;
    int              got;       /* a result arrived for this query */
    rh_stmt_id_t     stmt;      /* E_PREPARE: which statement */
} rh_expect_t;

#define FIFO_MAX 32

/* One finished job waiting for its finalize to commit. */
typedef struct {
    int64_t     id;
    int         attempt;
    const char *state;          /* "completed", "retryable", "discarded" */
    double      delay;          /* retryable: seconds until run_at */
    char       *err;            /* malloc'd, valid UTF-8, or NULL */
    int         mkey;           /* its (queue, kind) in the metrics table */
    int         unconfirmed;    /* its claim's commit not seen yet (early start) */
    /*
     * Counted as cancelled, not by its state: the job's cancel was known
     * (job_outcome) when its outcome was made, so the finalize,
     * which finds cancel_requested_at set, records a failed or unrun job
     * as cancelled.  A cancel requested after that is recorded so too but
     * counted by state: the worker cannot tell.
     */
    int         cancelled;
} rh_outcome_t;

typedef struct {
    rh_outcome_t *v;
    int           n, cap;
} rh_outcomes_t;

/* A growable string, for array literals. */
typedef struct {
    char  *s;
    size_t len, cap;
} rh_buf_t;

/* Where a claim's walk of one queue starts: a key of jobs_claim, as text; all NULL = its first entry. */
typedef struct {
    char *priority, *run_at, *id;
} rh_start_t;

static struct {
    const rh_config_t *cfg;
    rh_shm_slot_t     *shm;             /* our slot of the master's process table */
    rh_shm_t          *root;            /* the whole table (the cancel ring, notify_seq) */
    uint64_t           claim_seq;       /* notify_seq when the last claim was sent */
    pid_t              master_pid;
    int                slot, generation;
    int64_t            node_id;
    int64_t            worker_id;       /* our row in rhino.workers; 0 before registration */
    char               worker_id_s[24];
    char               queues_lit[4096];
    char               batch_s[16];

    struct ev_loop    *loop;
    ev_io              io;
    ev_timer           timer;           /* poll interval / reconnect backoff */
    ev_async           wake;            /* poked by the signal handler */

    PGconn            *conn;
    int                connected;       /* pipeline set up, registered */
    int                connecting;
    double             reconnect_delay;
    int                io_events;
    int                prepare;         /* named prepared statements ([database] prepare) */
    int                tx_open;         /* statements sent since the last sync */
    rh_stmt_id_t       tx_plans;        /* ... and the RH_STMT_PLANS_* mode they set, if tx_open */
    unsigned char      prepared[RH_STMT__COUNT];  /* ... prepared on this connection */

    rh_expect_t        fifo[FIFO_MAX];
    int                fifo_head, fifo_len;
    int                seg_error;       /* an error since the last sync */
    int                round_inflight;  /* syncs still expected */

    rh_registry_t      reg;
    char               kinds[1024];

    /* the batch in hand: rows of a claim result, run in order */
    PGresult          *cur;
    int                cur_n, cur_next;
    PGresult          *next;            /* the batch claimed while cur ran */
    PGresult          *claimed;         /* arrived with the round, not yet confirmed */
    int                claim_flushed;   /* the claim in flight asked for its rows before its commit */
    int                unconfirmed;     /* cur came from that claim, whose commit is not seen yet */
    int                claim_due;       /* claim in the next round */
    rh_stmt_id_t       claim_stmt;      /* RH_STMT_CLAIM or _LIMITED, the claim in flight */
    rh_start_t        *start;           /* per [worker] queue: where the next claim starts */
    rh_start_t        *start_next;      /* ... after the claim in flight, once it commits */
    int                claim_from_start; /* the claim in flight starts every queue at its first entry */
    double             last_rescan;     /* when a claim last started every queue at its first entry */
    int                check_alive;     /* ask whether our row is still live */
    double             last_alive_check;

    rh_outcomes_t      pending;         /* finished, not yet sent */
    rh_outcomes_t      inflight;        /* sent, awaiting the sync */
    int64_t            fin_matched;
    int                fin_seen;        /* this round's finalize result was read (fin_matched is its) */
    int64_t           *fin_stale_ids;   /* the last finalize's stale job ids, sorted */
    int                fin_nstale;
    int                fin_failures;    /* consecutive */
    int                fin_data_error;  /* a finalize since the last sync failed with SQLSTATE class 22 */

    double             sent_at[5];      /* per segment kind, for debug timings */
    int                tx_unknown_start, tx_unknown_end;  /* rows whose COMMIT went unanswered */
    uint64_t           n_tx_committed;
    uint64_t           rng;
    int                draining;
    int                final_sent;
    int                final_resent;    /* ... and went again after a data exception (this connection) */

    /* counters for the exit line */
    uint64_t           n_done, n_retry, n_discard, n_stale, n_claimed, n_snooze, n_cancel;
} W;

static volatile sig_atomic_t w_stop;
static volatile sig_atomic_t w_nudged;     /* SIGUSR1: the master heard of new jobs */

static void w_step(void);
static void w_broken(const char *why);
static void w_connect_start(void);
static void drain_results(void);

/* ---------------------------------------------------------------------- */
/* small helpers                                                          */

static void
buf_reserve(rh_buf_t *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return;
    while (b->len + more + 1 > b->cap)
        b->cap = b->cap ? b->cap * 2 : 4096;
    b->s = realloc(b->s, b->cap);
    if (b->s == NULL)
        rh_fatal("out of memory");
}

/*
 * The array literals of the claim-finalize loop are built with these, not
 * with printf: a 1000-job round formats 2000 numbers, and vsnprintf (called
 * twice per number, to size and to write) was the largest part of a
 * worker's CPU per job (perf of a drain).
 */
static void
buf_put(rh_buf_t *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void
buf_put_i64(rh_buf_t *b, int64_t v)
{
    char     tmp[24], *p = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;

    do {
        *--p = (char) ('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0)
        *--p = '-';
    buf_put(b, p, (size_t) (tmp + sizeof(tmp) - p));
}

/* Append a number as PGresult's text gave it to an array literal: no quoting needed. */
static void
buf_put_elem(rh_buf_t *b, const char *v)
{
    if (b->len > 1)
        buf_put(b, ",", 1);
    buf_put(b, v, strlen(v));
}

/* Append v to an array literal as one element, quoted, or NULL. */
static void
buf_put_quoted(rh_buf_t *b, const char *v)
{
    if (v == NULL) {
        buf_put(b, "NULL", 4);
        return;
    }
    buf_reserve(b, RH_DB_QUOTED_MAX(strlen(v)));
    b->len += rh_db_array_quote(b->s + b->len, v);
    b->s[b->len] = '\0';
}

/* Append one element to an array literal, quoted, or NULL. */
static void
buf_array_elem(rh_buf_t *b, const char *v)
{
    if (b->len > 1)
        buf_put(b, ",", 1);
    buf_put_quoted(b, v);
}

/* ---------------------------------------------------------------------- */
/* where a claim starts                                                   */

/*
 * Where a claim starts.  Every claimed job leaves its entry in jobs_claim
 * until VACUUM, in front of every walk of the queue (RH_CLAIM_PICK_FROM).
 * So after a full batch the next claim of a queue starts at the last key
 * that batch took of it: everything before it was claimed, or locked by
 * another worker's claim, when the walk passed.  A job can still become
 * available before that key: rescued or released, promoted from the
 * schedule, retried, enqueued with a better priority or an earlier run_at,
 * or left by a claim that rolled back.  It is found by the next walk from
 * the queue's first entry, which comes after every claim that was not full
 * (the walk got to the end: nothing is waiting behind anyone) and at least
 * every [worker] rescan_interval (0: every claim starts there).
 */
static void
start_clear(rh_start_t *st)
{
    for (int q = 0; q < W.cfg->nqueues; q++) {
        free(st[q].priority);
        free(st[q].run_at);
        free(st[q].id);
        st[q].priority = st[q].run_at = st[q].id = NULL;
    }
}

static int
start_any(const rh_start_t *st)
{
    for (int q = 0; q < W.cfg->nqueues; q++)
        if (st[q].id != NULL)
            return 1;
    return 0;
}

static char *
xstrdup(const char *s)
{
    char *d = strdup(s);

    if (d == NULL)
        rh_fatal("out of memory");
    return d;
}

/*
 * The claim result res came: compute start_next.  A full batch moves each
 * queue it took jobs of to the last of them (rows come in key order) and
 * leaves the others where this claim started them; a short one, the
 * limited claim, or a session whose DateStyle is not ISO (PostgreSQL's
 * default is), sends every queue back to its first entry.
 */
static void
start_after_claim(const PGresult *res, int from_start)
{
    const char *ds = PQparameterStatus(W.conn, "DateStyle");
    int         n = PQntuples(res);

    start_clear(W.start_next);
    if (W.claim_stmt != RH_STMT_CLAIM || n < W.cfg->batch_size || PQnfields(res) < 10)
        return;
    /* run_at reads back exactly only in ISO form (RH_CLAIM_OUT_KEY); else every claim starts at the first entry */
    if (ds == NULL || strncmp(ds, "ISO", 3) != 0)
        return;
    if (!from_start)
        for (int q = 0; q < W.cfg->nqueues; q++)
            if (W.start[q].id != NULL) {
                W.start_next[q].priority = xstrdup(W.start[q].priority);
                W.start_next[q].run_at = xstrdup(W.start[q].run_at);
                W.start_next[q].id = xstrdup(W.start[q].id);
            }
    for (int q = 0; q < W.cfg->nqueues; q++) {
        int last = -1;

        for (int i = 0; i < n; i++)
            if (strcmp(PQgetvalue(res, i, 3), W.cfg->queues[q]) == 0)
                last = i;
        if (last < 0)
            continue;
        free(W.start_next[q].priority);
        free(W.start_next[q].run_at);
        free(W.start_next[q].id);
        W.start_next[q].priority = xstrdup(PQgetvalue(res, last, 8));
        W.start_next[q].run_at = xstrdup(PQgetvalue(res, last, 9));
        W.start_next[q].id = xstrdup(PQgetvalue(res, last, 0));
    }
}

/* The claim in flight committed (ok) or not: its start_next becomes the start, or every queue starts over. */
static void
start_confirm(int ok)
{
    rh_start_t *t = W.start;

    if (!ok) {
        start_clear(W.start);
        start_clear(W.start_next);
        return;
    }
    start_clear(W.start);
    W.start = W.start_next;
    W.start_next = t;
}

/*
 * RH_STMT_CLAIM's $4-$6 for this claim into a[] (freed by the caller); all
 * NULL when it starts every queue at its first entry, as it does every
 * rescan_interval from now on.  Returns whether it does.
 */
static int
start_params(rh_buf_t a[3], const char *params[6], double now)
{
    params[3] = params[4] = params[5] = NULL;
    if (W.cfg->rescan_interval <= 0 || now - W.last_rescan >= W.cfg->rescan_interval || !start_any(W.start)) {
        W.last_rescan = now;
        return 1;
    }
    for (int k = 0; k < 3; k++) {
        memset(&a[k], 0, sizeof(a[k]));
        buf_put(&a[k], "{", 1);
    }
    for (int q = 0; q < W.cfg->nqueues; q++) {
        buf_array_elem(&a[0], W.start[q].priority);
        buf_array_elem(&a[1], W.start[q].run_at);
        buf_array_elem(&a[2], W.start[q].id);
    }
    for (int k = 0; k < 3; k++) {
        buf_put(&a[k], "}", 1);
        params[3 + k] = a[k].s;
    }
    return 0;
}

/*
 * Handler errors go into a text[] parameter: one invalid UTF-8 byte would
 * make PostgreSQL reject the whole finalize, batch included, forever.  So
 * anything that is not well-formed UTF-8 becomes '?', one per byte.  The
 * check is PostgreSQL's own (pg_utf8_islegal, RFC 3629): besides stray
 * bytes it refuses overlong forms (C0, C1, E0 80..9F, F0 80..8F),
 * UTF-16 surrogates (ED A0..BF) and code points above U+10FFFF (F4 90..,
 * F5..FF), all of which a check of the byte patterns alone lets through.
 */
static char *
utf8_clean(const char *s)
{
    size_t               n = strlen(s);
    char                *out = malloc(n + 1), *o = out;
    const unsigned char *p = (const unsigned char *) s;

    if (out == NULL)
        rh_fatal("out of memory");
    while (*p) {
        int           len = 0, ok;
        unsigned char lo = 0x80, hi = 0xBF;     /* the allowed range of the second byte */

        if (*p < 0x80)
            len = 1;
        else if (*p >= 0xC2 && *p <= 0xDF)
            len = 2;
        else if (*p >= 0xE0 && *p <= 0xEF) {
            len = 3;
            if (*p == 0xE0)
                lo = 0xA0;                      /* below: overlong */
            else if (*p == 0xED)
                hi = 0x9F;                      /* above: surrogates */
        } else if (*p >= 0xF0 && *p <= 0xF4) {
            len = 4;
            if (*p == 0xF0)
                lo = 0x90;                      /* below: overlong */
            else if (*p == 0xF4)
                hi = 0x8F;                      /* above: beyond U+10FFFF */
        }
        ok = len > 0 && (len == 1 || (p[1] >= lo && p[1] <= hi));
        for (int i = 2; ok && i < len; i++)
            if ((p[i] & 0xC0) != 0x80)
                ok = 0;
        if (!ok) {
            *o++ = '?';
            p++;
            continue;
        }
        memcpy(o, p, (size_t) len);
        o += len;
        p += len;
    }
    *o = '\0';
    return out;
}

static void
outcome_add(rh_outcomes_t *l, int64_t id, int attempt, const char *state, double delay, const char *err)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->v = realloc(l->v, sizeof(rh_outcome_t) * (size_t) l->cap);
        if (l->v == NULL)
            rh_fatal("out of memory");
    }
    l->v[l->n].id = id;
    l->v[l->n].attempt = attempt;
    l->v[l->n].state = state;
    l->v[l->n].delay = delay;
    l->v[l->n].err = err ? utf8_clean(err) : NULL;
    l->v[l->n].mkey = -1;
    l->v[l->n].unconfirmed = W.unconfirmed;
    l->v[l->n].cancelled = 0;
    l->n++;
}

/*
 * A claimed job that is not run because it was cancelled meanwhile: its
 * outcome goes with the pipeline's finalize, which records it cancelled
 * (its cancel_requested_at is set), why being its error.
 */
static void
outcome_not_run(const rhino_job *job, const char *why)
{
    outcome_add(&W.pending, job->id, job->attempt, "discarded", 0, why);
    W.pending.v[W.pending.n - 1].mkey = rh_metrics_key(job->queue, job->kind);
    W.pending.v[W.pending.n - 1].cancelled = 1;
    W.n_cancel++;
}

static void
outcomes_clear(rh_outcomes_t *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i].err);
    l->n = 0;
}

/* Move every outcome of src to the end of dst (src left empty). */
static void
outcomes_move(rh_outcomes_t *dst, rh_outcomes_t *src)
{
    for (int i = 0; i < src->n; i++) {
        outcome_add(dst, src->v[i].id, src->v[i].attempt, src->v[i].state, src->v[i].delay, NULL);
        dst->v[dst->n - 1].err = src->v[i].err;
        dst->v[dst->n - 1].mkey = src->v[i].mkey;
        dst->v[dst->n - 1].unconfirmed = src->v[i].unconfirmed;
        dst->v[dst->n - 1].cancelled = src->v[i].cancelled;
    }
    src->n = 0;
}

/* Take back the exit line's count of outcome o (job_outcome made it), which will not be recorded. */
static void
outcome_uncount(const rh_outcome_t *o)
{
    if (o->cancelled)
        W.n_cancel--;
    else if (strcmp(o->state, "completed") == 0)
        W.n_done--;
    else if (strcmp(o->state, "discarded") == 0)
        W.n_discard--;
    else if (strcmp(o->state, "scheduled") == 0)
        W.n_snooze--;
    else
        W.n_retry--;
}

/*
 * The early batch's claim committed (keep = 1: its outcomes are ordinary
 * ones now) or did not (keep = 0: drop them, and take back the counts
 * job_outcome made, so that the exit line counts what was recorded).
 */
static void
outcomes_confirm(rh_outcomes_t *l, int keep)
{
    int n = 0;

    for (int i = 0; i < l->n; i++) {
        rh_outcome_t *o = &l->v[i];

        if (!o->unconfirmed) {
            l->v[n++] = *o;
            continue;
        }
        if (keep) {
            o->unconfirmed = 0;
            l->v[n++] = *o;
            continue;
        }
        outcome_uncount(o);
        free(o->err);
    }
    if (!keep && n < l->n)
        rh_log_warning("%d job(s) ran before their claim's commit, which failed or went unconfirmed (the "
                       "connection was lost); their outcomes are dropped and they run again", l->n - n);
    l->n = n;
}

/*
 * A finalize failed with a data exception (SQLSTATE class 22): some
 * outcome's error text or delay is something PostgreSQL refuses (text in
 * a database whose encoding cannot hold it, say, 22P05).  Sent again as
 * it is, it would fail the same way forever and take every outcome of its
 * batch with it; the worker would exit, its jobs run again and bring the
 * same outcome back.  The error texts and delays are the only free-form
 * data a finalize carries, so make them plainly acceptable: ASCII only
 * ('?' for every other byte), delays finite and within RHINO_SNOOZE_MAX.
 * A later failure then has another cause and is counted as before.
 */
static void
outcomes_sanitize(rh_outcomes_t *l, const char *what)
{
    for (int i = 0; i < l->n; i++) {
        rh_outcome_t *o = &l->v[i];

        for (char *c = o->err; c && *c; c++)
            if ((unsigned char) *c >= 0x80)
                *c = '?';
        if (!(o->delay >= 0))
            o->delay = 0;
        else if (o->delay > RHINO_SNOOZE_MAX)
            o->delay = RHINO_SNOOZE_MAX;
    }
    rh_log_warning("%s failed with a data exception: its %d outcome(s) go again with their error texts "
                   "reduced to ASCII and their delays bounded", what, l->n);
}

/* ---------------------------------------------------------------------- */
/* metrics                                                                */

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

    return (x > y) - (x < y);
}

/* Remember the stale ids a finalize returned ("{4,9}" or NULL), sorted. */
static void
stale_ids_set(const PGresult *res)
{
    const char *s;

    W.fin_nstale = 0;
    if (PQnfields(res) < 2 || PQntuples(res) == 0 || PQgetisnull(res, 0, 1))
        return;
    s = PQgetvalue(res, 0, 1);
    free(W.fin_stale_ids);
    W.fin_stale_ids = malloc(sizeof(int64_t) * (strlen(s) / 2 + 1));
    if (W.fin_stale_ids == NULL)
        return;
    for (const char *p = s; *p;) {
        char *end;

        if (*p == '{' || *p == ',' || *p == '}') {
            p++;
            continue;
        }
        W.fin_stale_ids[W.fin_nstale++] = strtoll(p, &end, 10);
        if (end == p)
            break;
        p = end;
    }
    qsort(W.fin_stale_ids, (size_t) W.fin_nstale, sizeof(int64_t), cmp_i64);
}

/*
 * Count the outcomes of l, now committed, per (queue, kind) and state;
 * those the last finalize named stale (if with_stale) count as stale
 * instead.  Runs of equal keys are added at once.
 */
static void
count_confirmed(const rh_outcomes_t *l, int with_stale)
{
    int             key = -2;
    rh_counter_id_t what = RH_CNT_COMPLETED;
    uint64_t        run = 0;

    for (int i = 0; i < l->n; i++) {
        const rh_outcome_t *o = &l->v[i];
        rh_counter_id_t     w = o->cancelled ? RH_CNT_CANCELLED
                                : o->state[0] == 'c' ? RH_CNT_COMPLETED
                                : o->state[0] == 'd' ? RH_CNT_DISCARDED
                                : o->state[0] == 's' ? RH_CNT_SNOOZED : RH_CNT_RETRIED;

        if (with_stale && W.fin_nstale > 0 &&
            bsearch(&o->id, W.fin_stale_ids, (size_t) W.fin_nstale, sizeof(int64_t), cmp_i64) != NULL)
            w = RH_CNT_STALE;
        if (o->mkey != key || w != what) {
            if (run > 0)
                rh_metrics_add(key, what, run);
            key = o->mkey;
            what = w;
            run = 0;
        }
        run++;
    }
    if (run > 0)
        rh_metrics_add(key, what, run);
    if (with_stale)
        W.fin_nstale = 0;
}

/* Count the rows of a claim per (queue, kind): columns 3 and 4. */
static void
count_claimed(const PGresult *res)
{
    int n = PQntuples(res), start = 0;

    for (int i = 1; i <= n; i++) {
        if (i < n && strcmp(PQgetvalue(res, i, 3), PQgetvalue(res, start, 3)) == 0 &&
            strcmp(PQgetvalue(res, i, 4), PQgetvalue(res, start, 4)) == 0)
            continue;
        rh_metrics_add(rh_metrics_key(PQgetvalue(res, start, 3), PQgetvalue(res, start, 4)), RH_CNT_CLAIMED,
                       (uint64_t) (i - start));
        start = i;
    }
}

/* ---------------------------------------------------------------------- */
/* the pipeline                                                           */

static void
fifo_push(rh_expect_kind_t kind, rh_seg_t seg)
{
    rh_expect_t *e;

    if (W.fifo_len == FIFO_MAX)
        rh_fatal("internal error: pipeline FIFO overflow");
    e = &W.fifo[(W.fifo_head + W.fifo_len) % FIFO_MAX];
    e->kind = kind;
    e->seg = seg;
    e->got = 0;
    W.fifo_len++;
}

static rh_expect_t *
fifo_peek(void)
{
    return W.fifo_len ? &W.fifo[W.fifo_head] : NULL;
}

static void
fifo_pop(void)
{
    W.fifo_head = (W.fifo_head + 1) % FIFO_MAX;
    W.fifo_len--;
}

static void
io_update(int want_write)
{
    int ev = EV_READ | (want_write ? EV_WRITE : 0);

    if (ev == W.io_events)
        return;
    ev_io_stop(W.loop, &W.io);
    ev_io_set(&W.io, PQsocket(W.conn), ev);
    ev_io_start(W.loop, &W.io);
    W.io_events = ev;
}

/*
 * Send statement id with its parameters.  With [database] prepare on, each
 * statement is prepared on its first use on the connection, in the same
 * pipeline, and executed by name from then on: the server parses and
 * analyzes the claim and the finalize once per connection instead of once
 * per round, which a round of one job pays in full (the trickle's pickup
 * latency).  Before its first statement, and again when a statement asks
 * for the other mode, a transaction says how they are to be planned
 * (RH_STMT_PLANS_GENERIC or _CUSTOM, see there).  Off behind
 * a pooler in transaction mode that does not carry prepared statements
 * (PgBouncer before 1.21): on_result turns it off by itself if the server
 * says a statement is missing.
 */
static int
send_query(rh_stmt_id_t id, rh_expect_kind_t kind, rh_seg_t seg, const char *const *params)
{
    const rh_stmt_t *st = rh_sql(id);
    char             name[64];
    int              ok;

    if (W.prepare && id != RH_STMT_PLANS_GENERIC && id != RH_STMT_PLANS_CUSTOM) {
        rh_stmt_id_t plans = st->generic ? RH_STMT_PLANS_GENERIC : RH_STMT_PLANS_CUSTOM;

        if (!W.tx_open || W.tx_plans != plans) {
            if (send_query(plans, E_SETTING, seg, NULL) < 0)
                return -1;
            W.tx_plans = plans;
        }
    }
    W.tx_open = 1;
    if (W.prepare) {
        snprintf(name, sizeof(name), "rhino_%s", st->name);
        if (!W.prepared[id]) {
            if (!PQsendPrepare(W.conn, name, st->sql, st->nparams, NULL)) {
                w_broken(rh_db_error(W.conn, NULL));
                return -1;
            }
            fifo_push(E_PREPARE, seg);
            W.fifo[(W.fifo_head + W.fifo_len - 1) % FIFO_MAX].stmt = id;
            W.prepared[id] = 1;
        }
        ok = PQsendQueryPrepared(W.conn, name, st->nparams, params, NULL, NULL, 0);
    } else {
        ok = PQsendQueryParams(W.conn, st->sql, st->nparams, NULL, params, NULL, NULL, 0);
    }
    if (!ok) {
        w_broken(rh_db_error(W.conn, NULL));
        return -1;
    }
    fifo_push(kind, seg);
    return 0;
}

static int
send_sync(rh_seg_t seg)
{
    /* PQpipelineSync also flushes; a partial write leaves the rest to the write watcher */
    if (!PQpipelineSync(W.conn)) {
        w_broken(rh_db_error(W.conn, NULL));
        return -1;
    }
    fifo_push(E_SYNC, seg);
    W.tx_open = 0;
    W.round_inflight++;
    W.sent_at[seg] = rh_mono_now();
    return 0;
}

static int
flush_out(void)
{
    int rc = PQflush(W.conn);

    if (rc < 0) {
        w_broken(rh_db_error(W.conn, NULL));
        return -1;
    }
    io_update(rc == 1);
    return 0;
}

/*
 * The finalize statements' six parameters for the outcomes in l; free a[]
 * with params_free().  lean: only the first two (ids, attempts), all that
 * RH_STMT_FINALIZE_DONE[_KEEP] read.
 */
static void
finalize_params(const rh_outcomes_t *l, int lean, rh_buf_t a[5], const char *params[6])
{
    char tmp[64];
    int  na = lean ? 2 : 5;

    for (int k = 0; k < 5; k++) {
        memset(&a[k], 0, sizeof(a[k]));
        buf_put(&a[k], "{", 1);
    }
    for (int i = 0; i < l->n; i++) {
        const rh_outcome_t *o = &l->v[i];

        if (i > 0)
            for (int k = 0; k < na; k++)
                buf_put(&a[k], ",", 1);
        buf_put_i64(&a[0], o->id);
        buf_put_i64(&a[1], o->attempt);
        if (lean)
            continue;
        buf_put(&a[2], o->state, strlen(o->state));
        snprintf(tmp, sizeof(tmp), "%.6f", o->delay);
        buf_put(&a[3], tmp, strlen(tmp));
        buf_put_quoted(&a[4], o->err);
    }
    for (int k = 0; k < 5; k++) {
        buf_put(&a[k], "}", 1);
        params[k] = a[k].s;
    }
    params[5] = W.cfg->retention_completed > 0 ? "true" : "false";
}

static void
params_free(rh_buf_t a[5])
{
    for (int k = 0; k < 5; k++)
        free(a[k].s);
}

static int
send_finalize(rh_outcomes_t *l, rh_seg_t seg)
{
    rh_buf_t    a[5];
    const char *params[6];
    int         rc;
    int         all_done = 1;

    /* a batch of successes, the usual one, takes the lean statement (its first two parameters) */
    for (int i = 0; i < l->n && all_done; i++)
        all_done = strcmp(l->v[i].state, "completed") == 0;
    finalize_params(l, all_done, a, params);
    rc = send_query(!all_done ? RH_STMT_FINALIZE
                    : W.cfg->retention_completed > 0 ? RH_STMT_FINALIZE_DONE_KEEP : RH_STMT_FINALIZE_DONE,
                    E_FINALIZE, seg, params);
    params_free(a);
    return rc;
}

/* Release the unstarted rows of the batch in hand (fenced, attempt given back). */
static int
send_release_unstarted(rh_seg_t seg)
{
    rh_buf_t    ids = { 0 }, att = { 0 };
    const char *params[2];
    int         rc;

    buf_put(&ids, "{", 1);
    buf_put(&att, "{", 1);
    for (int i = W.cur ? W.cur_next : 0; W.cur && i < W.cur_n; i++) {
        buf_put_elem(&ids, PQgetvalue(W.cur, i, 0));
        buf_put_elem(&att, PQgetvalue(W.cur, i, 1));
    }
    for (int i = 0; W.next && i < PQntuples(W.next); i++) {
        buf_put_elem(&ids, PQgetvalue(W.next, i, 0));
        buf_put_elem(&att, PQgetvalue(W.next, i, 1));
    }
    buf_put(&ids, "}", 1);
    buf_put(&att, "}", 1);
    params[0] = ids.s;
    params[1] = att.s;
    rc = send_query(RH_STMT_RELEASE, E_RELEASE, seg, params);
    free(ids.s);
    free(att.s);
    return rc;
}

/* Done with the batch in hand: the next one, if any, takes its place. */
static void
cur_clear(void)
{
    if (W.cur)
        PQclear(W.cur);
    W.cur = W.next;
    W.cur_n = W.next ? PQntuples(W.next) : 0;
    W.cur_next = 0;
    W.next = NULL;
}

static void
batches_clear(void)
{
    cur_clear();
    cur_clear();
}

/* ---------------------------------------------------------------------- */
/* running handlers                                                       */

/* Fill job from row `row` of the batch in hand. */
static void
job_from_row(int row, rhino_job *job)
{
    memset(job, 0, sizeof(*job));
    job->id = strtoll(PQgetvalue(W.cur, row, 0), NULL, 10);
    job->attempt = atoi(PQgetvalue(W.cur, row, 1));
    job->max_attempts = atoi(PQgetvalue(W.cur, row, 2));
    job->queue = PQgetvalue(W.cur, row, 3);
    job->kind = PQgetvalue(W.cur, row, 4);
    job->payload = PQgetvalue(W.cur, row, 5);
    job->payload_len = (size_t) PQgetlength(W.cur, row, 5);
    job->timeout = PQgetisnull(W.cur, row, 6) ? W.cfg->job_timeout : strtod(PQgetvalue(W.cur, row, 6), NULL);
    job->errors = atoi(PQgetvalue(W.cur, row, 7));
    job->slot = W.shm;
    job->snooze = -1;
}


/*
 * Call the handler with the job published in shared memory, so that the
 * master can enforce its deadline and, if the worker dies, report this job
 * as the one that crashed (not the others the worker held).
 */
static int
call_handler(const rh_handler_t *h, rhino_job *job)
{
    int    rc;
    double t0;

    rh_shm_store(&W.shm->job_attempt, job->attempt);
    rh_shm_store_d(&W.shm->deadline, job->timeout > 0 ? rh_mono_now() + job->timeout : 0.0);
    rh_shm_store(&W.shm->job_id, job->id);
    t0 = rh_mono_now();
    rc = h->fn(job);
    rh_metrics_observe(W.slot, RH_HIST_RUN, rh_mono_now() - t0);
    rh_shm_store(&W.shm->job_id, (int64_t) 0);
    rh_shm_store_d(&W.shm->deadline, 0.0);
    return rc;
}

/* Turn a handler's return code into an outcome in list l (job_outcome). */
static void
outcome_of_rc(rhino_job *job, int rc, rh_outcomes_t *l)
{
    const char *err = job->has_error ? job->error : NULL;
    int         mkey = rh_metrics_key(job->queue, job->kind);

    switch (rc) {
    case RHINO_OK:
        outcome_add(l, job->id, job->attempt, "completed", 0, NULL);
        l->v[l->n - 1].mkey = mkey;
        W.n_done++;
        return;
    case RHINO_DISCARD:
        outcome_add(l, job->id, job->attempt, "discarded", 0, err ? err : "handler returned RHINO_DISCARD");
        l->v[l->n - 1].mkey = mkey;
        W.n_discard++;
        return;
    case RHINO_SNOOZE:
        /* 'scheduled' asks the finalize to snooze: no error counted */
        outcome_add(l, job->id, job->attempt, "scheduled", job->snooze < 0 ? 1.0 : job->snooze, NULL);
        l->v[l->n - 1].mkey = mkey;
        W.n_snooze++;
        return;
    case RHINO_RETRY:
        break;
    default:
        snprintf(job->error, sizeof(job->error), "handler returned %d, which is not RHINO_OK, RHINO_RETRY, "
                 "RHINO_DISCARD or RHINO_SNOOZE", rc);
        err = job->error;
        break;
    }
    if (err == NULL)
        err = "handler returned RHINO_RETRY";
    /*
     * max_attempts counts failed runs, not claims: a run cut short by a
     * worker's death is counted by the reaper as a crash, and a job held
     * by a worker that died without running it has not failed at all.
     */
    if (job->errors + 1 >= job->max_attempts) {
        outcome_add(l, job->id, job->attempt, "discarded", 0, err);
        l->v[l->n - 1].mkey = mkey;
        W.n_discard++;
    } else {
        double d = rh_backoff_delay(job->attempt, W.cfg->retry_base_delay, W.cfg->retry_max_delay,
                                    rh_rand_unit(&W.rng));
        outcome_add(l, job->id, job->attempt, "retryable", d, err);
        l->v[l->n - 1].mkey = mkey;
        W.n_retry++;
    }
}

/*
 * A handler's outcome, as outcome_of_rc makes it, counted as cancelled
 * rather than by its state when it is not a completion and the job's
 * cancel is known here (the reaper flagged it on our slot for the handler,
 * rhino_job_cancelled, or listed it): the finalize, which finds
 * cancel_requested_at set, then records it cancelled (a handler that
 * noticed the cancel and returned RHINO_RETRY or RHINO_DISCARD, as asked),
 * and an alert on discards must not fire for it.
 */
static void
job_outcome(rhino_job *job, int rc, rh_outcomes_t *l)
{
    rh_outcome_t *o;

    outcome_of_rc(job, rc, l);
    o = &l->v[l->n - 1];
    if (strcmp(o->state, "completed") != 0 && (rhino_job_cancelled(job) || rh_shm_cancel_listed(W.root, job->id))) {
        outcome_uncount(o);
        o->cancelled = 1;
        W.n_cancel++;
    }
}

/*
 * A job of a kind no handler serves fails each run with that in its
 * last_error, and is retried with backoff until max_attempts discards it:
 * a typo in an enqueue, or a deploy that forgot a library.  Only the job's
 * row said so; say it once in the log too, per kind and worker life (at
 * most RH_UNKNOWN_KINDS kinds, so that a flood of made-up kinds cannot grow
 * the list), with what to do.
 */
#define RH_UNKNOWN_KINDS 32

static void
warn_unknown_kind(const rhino_job *job)
{
    static char *seen[RH_UNKNOWN_KINDS];
    static int   nseen;

    for (int i = 0; i < nseen; i++)
        if (strcmp(seen[i], job->kind) == 0)
            return;
    if (nseen == RH_UNKNOWN_KINDS)
        return;
    seen[nseen] = strdup(job->kind);
    if (seen[nseen] == NULL)
        return;
    nseen++;
    rh_log_warning("no handler for kind \"%s\" (job %" PRId64 ", and every other job of it): it is retried "
                   "with backoff and discarded after max_attempts; load a library that declares it "
                   "([handlers] path, then SIGHUP), or cancel the jobs (loaded kinds: %s)%s",
                   job->kind, job->id, W.kinds,
                   nseen == RH_UNKNOWN_KINDS ? "; further unknown kinds are not logged" : "");
}

/*
 * The handler for row `row`, or NULL after recording the outcome of a job
 * that must not run (no handler for its kind, attempts exhausted).
 */
static const rh_handler_t *
job_handler(int row, rhino_job *job)
{
    const rh_handler_t *h;

    job_from_row(row, job);
    if (rh_shm_cancel_listed(W.root, job->id)) {
        /* the reaper saw it cancelled after we claimed it and before it started */
        outcome_not_run(job, "cancelled before it started");
        return NULL;
    }
    h = rh_loader_find(&W.reg, job->kind);
    if (h == NULL) {
        /* a rolling deploy may bring the handler: retry, as any failure */
        snprintf(job->error, sizeof(job->error), "no handler for kind \"%s\" in this worker (loaded: %s)",
                 job->kind, W.kinds);
        job->has_error = 1;
        job_outcome(job, RHINO_RETRY, &W.pending);
        warn_unknown_kind(job);
    }
    return h;
}

/* ---------------------------------------------------------------------- */
/* transactional handlers                                                 */

/*
 * Wait, blocking, until the round in flight is answered: a transaction
 * needs the connection to itself.  -1 if the connection was lost.
 */
static int
sync_drain(void)
{
    while (W.conn && W.connected && W.round_inflight > 0) {
        struct pollfd pfd;

        if (flush_out() < 0)
            return -1;
        pfd.fd = PQsocket(W.conn);
        pfd.events = POLLIN | ((W.io_events & EV_WRITE) ? POLLOUT : 0);
        pfd.revents = 0;
        if (poll(&pfd, 1, 1000) < 0 && errno != EINTR) {
            w_broken(strerror(errno));
            return -1;
        }
        if (!PQconsumeInput(W.conn)) {
            w_broken(rh_db_error(W.conn, NULL));
            return -1;
        }
        drain_results();
    }
    return W.conn && W.connected ? 0 : -1;
}

/* A synchronous command inside the batch's transaction; 0, or -1 with the result's status logged. */
static int
tx_cmd(const char *sql)
{
    PGresult *res = PQexec(W.conn, sql);
    int       ok = PQresultStatus(res) == PGRES_COMMAND_OK;

    if (!ok && PQstatus(W.conn) != CONNECTION_BAD)
        rh_log_error("%s failed: %s", sql, rh_db_error(W.conn, res));
    PQclear(res);
    return ok ? 0 : -1;
}

/*
 * Send the fenced completion and the COMMIT in one flush (pipeline mode,
 * one Sync), so that the server commits as soon as the completion
 * succeeds, without waiting on us: a worker frozen between the two would
 * hold the jobs' row locks, which the rescue skips.  If the completion
 * fails (RH409), the pipeline skips the COMMIT and the transaction stays
 * open, aborted.  Returns the completion's result and puts the COMMIT's in
 * *commit; NULL if the exchange broke (the caller checks the connection).
 */
static PGresult *
tx_finalize_commit(rh_outcomes_t *l, PGresult **commit)
{
    rh_buf_t    a[5];
    const char *params[6];
    PGresult   *fin, *r;
    int         ok;

    *commit = NULL;
    if (!PQenterPipelineMode(W.conn))
        return NULL;
    finalize_params(l, 0, a, params);
    ok = PQsendQueryParams(W.conn, rh_sql(RH_STMT_FINALIZE_TX)->sql, 6, NULL, params, NULL, NULL, 0) &&
         PQsendQueryParams(W.conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) &&
         PQpipelineSync(W.conn);
    params_free(a);
    if (!ok)
        return NULL;
    /* results: completion, NULL, COMMIT, NULL, sync */
    fin = PQgetResult(W.conn);
    if (fin == NULL || (r = PQgetResult(W.conn)) != NULL) {
        PQclear(fin);
        return NULL;
    }
    *commit = PQgetResult(W.conn);
    if (*commit == NULL || PQgetResult(W.conn) != NULL ||
        (r = PQgetResult(W.conn)) == NULL || PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
        PQclear(fin);
        return NULL;
    }
    PQclear(r);
    if (!PQexitPipelineMode(W.conn)) {
        PQclear(fin);
        return NULL;
    }
    return fin;
}

/* The ids of rows [start, end) of the batch in hand as an int8[] literal (malloc'd). */
static char *
cur_ids_literal(int start, int end)
{
    rh_buf_t ids = { 0 };

    buf_put(&ids, "{", 1);
    for (int i = start; i < end; i++)
        buf_put_elem(&ids, PQgetvalue(W.cur, i, 0));
    buf_put(&ids, "}", 1);
    return ids.s;
}

/*
 * Is row `row` of the batch in hand still ours, by a RH_STMT_JOB_STATES
 * result: running, under our worker row, at the attempt we claimed?
 */
static int
still_ours(const PGresult *states, int row)
{
    for (int r = 0; r < PQntuples(states); r++)
        if (strcmp(PQgetvalue(states, r, 0), PQgetvalue(W.cur, row, 0)) == 0)
            return strcmp(PQgetvalue(states, r, 1), PQgetvalue(W.cur, row, 1)) == 0 &&
                   strcmp(PQgetvalue(states, r, 2), "running") == 0 &&
                   strcmp(PQgetvalue(states, r, 3), W.worker_id_s) == 0;
    return 0;
}

/*
 * After SQLSTATE RH409: which of the outcomes' jobs are no longer ours?
 * Marks them in `drop` (by index into the group) and returns how many.
 */
static int
tx_find_stale(int start, int end, char *drop)
{
    char       *ids = cur_ids_literal(start, end);
    const char *p[1] = { ids };
    PGresult   *res;
    int         stale = 0;

    res = PQexecParams(W.conn, rh_sql(RH_STMT_JOB_STATES)->sql, 1, NULL, p, NULL, NULL, 0);
    free(ids);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        return -1;
    }
    for (int i = start; i < end; i++) {
        if (!still_ours(res, i) && !drop[i - start]) {
            drop[i - start] = 1;
            stale++;
            rh_metrics_add(rh_metrics_key(PQgetvalue(W.cur, i, 3), PQgetvalue(W.cur, i, 4)), RH_CNT_STALE, 1);
        }
    }
    PQclear(res);
    return stale;
}

/* How many outcomes of l have the state state. */
static int
outcomes_count(const rh_outcomes_t *l, const char *state)
{
    int n = 0;

    for (int i = 0; i < l->n; i++)
        n += strcmp(l->v[i].state, state) == 0;
    return n;
}

/*
 * The completed outcomes of a transactional group whose writes did not, or
 * may not, have committed: retried instead, fenced, with why as the error,
 * so that the work is done again rather than recorded as done without it.
 */
static void
tx_retry_completed(rh_outcomes_t *tx, const char *why)
{
    for (int i = 0; i < tx->n; i++) {
        rh_outcome_t *o = &tx->v[i];

        if (strcmp(o->state, "completed") != 0)
            continue;
        W.n_done--;
        W.n_retry++;
        o->state = "retryable";
        o->delay = rh_backoff_delay(o->attempt, W.cfg->retry_base_delay, W.cfg->retry_max_delay,
                                    rh_rand_unit(&W.rng));
        free(o->err);
        o->err = utf8_clean(why);
    }
}

/*
 * Run rows [start, end) of the batch, all transactional, in one
 * transaction on the worker's connection: BEGIN; per job SAVEPOINT,
 * handler, RELEASE or ROLLBACK TO; the fenced finalize of all of them
 * (which raises RH409 if any attempt is stale); COMMIT.  The handlers'
 * writes and the completions commit together or not at all.
 *
 * Stale attempts (the job was rescued and claimed again while we ran it)
 * roll the whole transaction back; the stale jobs are dropped and the rest
 * run again in a new one.  If the connection is lost, nothing of the
 * transaction is replayed: jobs whose COMMIT did not happen are still
 * running under our id and are handed back on reconnect, after their state
 * has been read (W.tx_unknown).
 *
 * Returns the first row not run (end, or earlier when a stop was asked for).
 */
static int
run_tx(int start, int end)
{
    int           n = end - start, stop_at = end, stale, ended = 0, ascii = 0;
    char         *drop = calloc((size_t) n, 1);
    rh_outcomes_t tx = { 0 };
    PGresult     *res, *cres;

    if (drop == NULL)
        rh_fatal("out of memory");
    if (sync_drain() < 0 || !PQexitPipelineMode(W.conn) || PQsetnonblocking(W.conn, 0) != 0) {
        if (W.conn && W.connected)
            w_broken(rh_db_error(W.conn, NULL));
        free(drop);
        return start;
    }

    for (int round = 0;; round++) {
        for (int k = 0; k < tx.n; k++)
            outcome_uncount(&tx.v[k]);  /* the last round's, rolled back: they run again */
        outcomes_clear(&tx);
        if (tx_cmd("BEGIN") < 0)
            goto lost;
        for (int i = start; i < stop_at; i++) {
            rhino_job           job;
            const rh_handler_t *h;
            int                 rc;

            if (drop[i - start])
                continue;
            if (round == 0 && w_stop && i > start) {
                stop_at = i;    /* draining: the rest stay unstarted and are released */
                break;
            }
            job_from_row(i, &job);
            /*
             * Cancelled after the claim: job_handler checked only the
             * group's first job, and a retry round reruns jobs whose
             * writes rolled back.  As there, it does not run; its outcome
             * goes with the pipeline's finalize, which records it
             * cancelled (cancel_requested_at is set).
             */
            if (rh_shm_cancel_listed(W.root, job.id)) {
                drop[i - start] = 1;
                outcome_not_run(&job, round == 0 ? "cancelled before it started"
                                      : "cancelled before its transaction committed; not run again");
                continue;
            }
            h = rh_loader_find(&W.reg, job.kind);
            job.conn = W.conn;
            if (tx_cmd("SAVEPOINT rhino_job") < 0)
                goto lost;
            rc = call_handler(h, &job);
            if (PQstatus(W.conn) == CONNECTION_BAD)
                goto lost;
            switch (PQtransactionStatus(W.conn)) {
            case PQTRANS_INTRANS:
                if (rc == RHINO_OK) {
                    if (tx_cmd("RELEASE SAVEPOINT rhino_job") < 0)
                        goto lost;
                    break;
                }
                /* a failed job keeps none of its writes */
                __attribute__((fallthrough));
            case PQTRANS_INERROR:
                if (rc == RHINO_OK) {
                    snprintf(job.error, sizeof(job.error), "a statement of the handler failed: %s",
                             rh_db_error(W.conn, NULL));
                    job.has_error = 1;
                    rc = RHINO_RETRY;
                }
                if (tx_cmd("ROLLBACK TO SAVEPOINT rhino_job") < 0 || tx_cmd("RELEASE SAVEPOINT rhino_job") < 0)
                    goto lost;
                break;
            default:
                /*
                 * The handler ended our transaction (COMMIT or ROLLBACK):
                 * the writes of the group's earlier jobs were committed or
                 * thrown away, and we cannot tell which.  Nothing of the
                 * group may be finalized as completed on the assumption,
                 * nor run again by a retry round: end the group here (see
                 * below); the jobs after it go in a new transaction.
                 */
                rh_log_error("handler for kind \"%s\" ended the worker's transaction (job %" PRId64 "); "
                             "the %d earlier completed job(s) of its group are retried", job.kind, job.id,
                             outcomes_count(&tx, "completed"));
                snprintf(job.error, sizeof(job.error), "the handler ended the worker's transaction: "
                         "COMMIT and ROLLBACK are not allowed in a transactional handler");
                job.has_error = 1;
                job_outcome(&job, RHINO_DISCARD, &tx);
                stop_at = i + 1;
                ended = 1;
                break;
            }
            if (ended)
                break;
            job_outcome(&job, rc, &tx);
        }
        if (ended) {
            /*
             * Their writes may be gone (ROLLBACK): retry them, fenced, from
             * the pipeline.  After a COMMIT that reruns committed work, the
             * lesser harm than recording as done work that never happened.
             */
            if (PQtransactionStatus(W.conn) != PQTRANS_IDLE && tx_cmd("ROLLBACK") < 0)
                goto lost;
            tx_retry_completed(&tx, "a later job of its transaction ended it (COMMIT or ROLLBACK in a "
                                    "transactional handler): its writes may not have committed");
            outcomes_move(&W.pending, &tx);
            break;
        }
        if (tx.n == 0) {
            tx_cmd("ROLLBACK");
            break;
        }

        if (ascii)
            outcomes_sanitize(&tx, "a transactional batch's completion");
        /* from the completion's sending until the COMMIT's answer the outcome is ambiguous */
        W.tx_unknown_start = start;
        W.tx_unknown_end = stop_at;
        res = tx_finalize_commit(&tx, &cres);
        if (res == NULL || PQstatus(W.conn) == CONNECTION_BAD) {
            PQclear(res);
            PQclear(cres);
            goto lost;
        }
        W.tx_unknown_end = W.tx_unknown_start = 0;
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            PQclear(res);
            if (PQresultStatus(cres) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(cres), "COMMIT") == 0) {
                PQclear(cres);
                W.n_tx_committed += (uint64_t) tx.n;
                count_confirmed(&tx, 0);    /* fenced: a stale one would have raised RH409 */
                break;
            }
            rh_log_error("COMMIT of a transactional batch failed: %s", rh_db_error(W.conn, cres));
            PQclear(cres);
            if (PQtransactionStatus(W.conn) != PQTRANS_IDLE && tx_cmd("ROLLBACK") < 0)
                goto lost;
        } else {
            const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);

            PQclear(cres);          /* skipped: PGRES_PIPELINE_ABORTED */
            if (code && strcmp(code, "RH409") == 0 && round < 5) {
                PQclear(res);
                if (tx_cmd("ROLLBACK") < 0 || (stale = tx_find_stale(start, stop_at, drop)) < 0)
                    goto lost;
                W.n_stale += (uint64_t) stale;
                rh_log_warning("transactional batch rolled back: %d job(s) had been rescued and claimed "
                               "again (stale attempt); their writes are undone, the other jobs run again",
                               stale);
                continue;
            }
            if (code && strncmp(code, "22", 2) == 0 && !ascii) {
                /*
                 * A data exception: an outcome the database refuses (an
                 * error text its encoding cannot hold).  Retried as it is,
                 * it would undo every sibling's writes on each attempt;
                 * so the group runs again at once, its writes having
                 * rolled back, with its outcomes made plainly acceptable
                 * (outcomes_sanitize).
                 */
                rh_log_warning("transactional batch rolled back: its completion failed with a data exception "
                               "(%s); the jobs run again, their outcomes reduced to ASCII", rh_db_error(W.conn, res));
                PQclear(res);
                if (tx_cmd("ROLLBACK") < 0)
                    goto lost;
                ascii = 1;
                continue;
            }
            rh_log_error("fenced completion of a transactional batch failed: %s", rh_db_error(W.conn, res));
            PQclear(res);
            if (tx_cmd("ROLLBACK") < 0)
                goto lost;
        }
        /* rolled back for another reason: the writes are gone; retry the jobs, fenced, from the pipeline */
        tx_retry_completed(&tx, "the job's transaction did not commit (see the worker's log)");
        outcomes_move(&W.pending, &tx);
        break;
    }
    free(tx.v);
    free(drop);
    if (PQsetnonblocking(W.conn, 1) != 0 || !PQenterPipelineMode(W.conn)) {
        w_broken(rh_db_error(W.conn, NULL));
        return stop_at;
    }
    return stop_at;

lost:
    for (int k = 0; k < tx.n; k++)
        outcome_uncount(&tx.v[k]);      /* not recorded: handed back and run again */
    outcomes_clear(&tx);
    free(tx.v);
    free(drop);
    w_broken(rh_db_error(W.conn, NULL));
    return start;
}

/* ---------------------------------------------------------------------- */

/*
 * Run the batch in hand until it is done or a stop is asked for.  Fast
 * handlers run one by one, their outcomes finalized by the next round;
 * consecutive transactional jobs run together in one transaction.
 * early: the claim's commit is not seen yet (early start), so stop before
 * the first transactional handler, whose transaction must not begin on a
 * claim that may still fail.
 */
static void
run_batch(int early)
{
    while (W.cur && W.cur_next < W.cur_n && !w_stop && W.connected) {
        rhino_job           job;
        const rh_handler_t *h = job_handler(W.cur_next, &job);
        int                 end;

        if (h == NULL) {
            W.cur_next++;
            continue;
        }
        if (!(h->flags & RHINO_F_TX)) {
            job_outcome(&job, call_handler(h, &job), &W.pending);
            W.cur_next++;
            continue;
        }
        if (early)
            return;
        for (end = W.cur_next + 1; end < W.cur_n; end++) {
            const rh_handler_t *h2 = rh_loader_find(&W.reg, PQgetvalue(W.cur, end, 4));
            if (h2 == NULL || !(h2->flags & RHINO_F_TX))
                break;
        }
        W.cur_next = run_tx(W.cur_next, end);
    }
    if (W.cur && W.cur_next == W.cur_n)
        cur_clear();
}

/* ---------------------------------------------------------------------- */
/* results                                                                */

static void on_sync_seg(rh_seg_t seg, int ok);

/* Say how many of the finalizes in flight the attempt fence rejected (their jobs were rescued). */
static void
report_stale(void)
{
    int64_t stale = W.inflight.n - W.fin_matched;

    if (!W.fin_seen || stale <= 0)
        return;
    W.n_stale += (uint64_t) stale;
    rh_log_warning("%" PRId64 " of %d finalizes were stale (the jobs were rescued and "
                   "claimed again); their outcomes were not recorded", stale, W.inflight.n);
}

static void
on_sync(rh_seg_t seg)
{
    int ok = !W.seg_error;

    W.seg_error = 0;
    W.round_inflight--;
    rh_log_debug("segment %d done in %.2f ms (%s)", (int) seg, (rh_mono_now() - W.sent_at[seg]) * 1000,
                 ok ? "ok" : "failed");
    if (seg == SEG_ROUND) {
        /* one transaction: both halves committed, or neither */
        W.sent_at[SEG_FINALIZE] = W.sent_at[SEG_CLAIM] = W.sent_at[SEG_ROUND];
        on_sync_seg(SEG_FINALIZE, ok);
        on_sync_seg(SEG_CLAIM, ok);
    } else
        on_sync_seg(seg, ok);
    W.fin_seen = 0;         /* the next round's finalize, if any, sets it again */
    W.fin_data_error = 0;
}

static void
on_sync_seg(rh_seg_t seg, int ok)
{
    switch (seg) {
    case SEG_SETUP:
        if (!ok) {
            /* the whole setup transaction rolled back; outcomes stay pending */
            outcomes_move(&W.pending, &W.inflight);
            if (W.fin_data_error)
                outcomes_sanitize(&W.pending, "the replay of finalizes");
            rh_log_error("worker setup failed; retrying in 1 s");
            W.connected = 0;
            ev_timer_stop(W.loop, &W.timer);
            ev_timer_set(&W.timer, 1.0, 0);
            ev_timer_start(W.loop, &W.timer);
            return;
        }
        count_confirmed(&W.inflight, 1);    /* replayed finalizes */
        outcomes_clear(&W.inflight);
        batches_clear();        /* handed back by release_mine */
        W.connected = 1;
        W.reconnect_delay = 0;
        rh_shm_store(&W.shm->ready, 1);
        W.claim_due = 1;
        rh_log_info("worker %s ready (node %" PRId64 ", slot %d, generation %d, %d handler kinds)",
                    W.worker_id_s, W.node_id, W.slot, W.generation, W.reg.n);
        break;
    case SEG_FINALIZE:
        if (ok) {
            report_stale();
            rh_metrics_observe(W.slot, RH_HIST_FINALIZE, rh_mono_now() - W.sent_at[seg]);
            count_confirmed(&W.inflight, 1);
            outcomes_clear(&W.inflight);
            W.fin_failures = 0;
        } else {
            outcomes_move(&W.pending, &W.inflight);
            if (W.fin_data_error)
                outcomes_sanitize(&W.pending, "the finalize");
            if (++W.fin_failures >= 10) {
                /*
                 * Not exit: these outcomes are of jobs that ran, and a rescue
                 * would run them again (a second charge for a non-transactional
                 * handler).  A fresh session instead, whose setup replays
                 * them (fenced) and hands back what has not started; while
                 * that fails too (a trigger of yours refusing them, say) it
                 * retries with backoff and claims nothing, and the jobs stay
                 * running under this live worker until it succeeds.
                 */
                W.fin_failures = 0;
                w_broken("finalize failed 10 times in a row; starting a new session to record "
                         "the outcomes held");
                return;
            }
        }
        break;
    case SEG_CLAIM:
        W.claim_flushed = 0;
        start_confirm(ok);
        if (W.unconfirmed) {
            /* the batch started early (on_result): its claim's fate is known now */
            W.unconfirmed = 0;
            outcomes_confirm(&W.pending, ok);
            if (ok) {
                rh_metrics_observe(W.slot, RH_HIST_CLAIM, rh_mono_now() - W.sent_at[seg]);
                W.claim_due = 1;        /* there was work: look again at once */
            } else if (W.cur) {
                cur_clear();            /* rolled back: the rest is not ours to run */
            }
        }
        if (ok && W.claimed) {
            int n = PQntuples(W.claimed);
            rh_metrics_observe(W.slot, RH_HIST_CLAIM, rh_mono_now() - W.sent_at[seg]);
            count_claimed(W.claimed);
            if (n > 0) {
                if (W.cur == NULL) {
                    W.cur = W.claimed;
                    W.cur_n = n;
                    W.cur_next = 0;
                } else {
                    W.next = W.claimed;
                }
                W.n_claimed += (uint64_t) n;
                W.claim_due = 1;        /* there was work: look again at once */
            } else {
                PQclear(W.claimed);
            }
            W.claimed = NULL;
        } else if (W.claimed) {
            PQclear(W.claimed);
            W.claimed = NULL;
        }
        break;
    case SEG_FINAL:
        if (!ok && W.fin_data_error && !W.final_resent) {
            /*
             * As for a round's finalize (outcomes_sanitize): once more with
             * texts and delays PostgreSQL takes, rather than exit and have
             * every job of the drain run again for one outcome.  w_step
             * sends the final segment again.
             */
            W.final_resent = 1;
            W.final_sent = 0;
            outcomes_move(&W.pending, &W.inflight);
            outcomes_sanitize(&W.pending, "the final finalize");
            break;
        }
        if (!ok) {
            /*
             * As for a round (above): the outcomes are of jobs that ran, so
             * keep them for a new session's setup, which replays them and
             * hands the rest back; the drain then ends as usual.  Should
             * that never succeed, shutdown_timeout ends the process and the
             * reaper hands the jobs back.
             */
            w_broken("the final finalize/release failed; starting a new session to record the "
                     "outcomes held");
            return;
        }
        count_confirmed(&W.inflight, 1);
        rh_log_info("worker drained: %" PRIu64 " claimed, %" PRIu64 " completed, %" PRIu64 " retried, %"
                    PRIu64 " discarded, %" PRIu64 " cancelled, %" PRIu64 " stale, %" PRIu64 " committed in transactions",
                    W.n_claimed, W.n_done, W.n_retry, W.n_discard, W.n_cancel, W.n_stale, W.n_tx_committed);
        PQfinish(W.conn);
        exit(RH_EXIT_OK);
    case SEG_ROUND:
        break;                  /* split by on_sync */
    }
}

static void
on_result(rh_expect_t *e, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);

    if (e->kind == E_PREPARE && st != PGRES_COMMAND_OK)
        W.prepared[e->stmt] = 0;        /* not prepared after all: prepare again next time */
    if (st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED) {
        if (st == PGRES_FATAL_ERROR) {
            const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            rh_log_error("%s failed (SQLSTATE %s): %s",
                         e->kind == E_CLAIM ? "claim" : e->kind == E_FINALIZE ? "finalize"
                         : e->kind == E_REGISTER ? "worker registration"
                         : e->kind == E_PREPARE ? "prepare" : "statement",
                         code ? code : "?", rh_db_error(W.conn, res));
            /*
             * A prepared statement missing (26000) or already there (42P05):
             * our statements reach server sessions other than the one that
             * prepared them, a pooler in transaction mode.  The round fails
             * like any other (its outcomes are sent again, fenced); from
             * now on this worker sends its statements unnamed.
             */
            if (W.prepare && code && (strcmp(code, "26000") == 0 || strcmp(code, "42P05") == 0)) {
                rh_log_warning("prepared statements do not survive between transactions on this connection "
                               "(a pooler in transaction mode, such as PgBouncer before 1.21?): "
                               "sending statements unnamed from now on; set [database] prepare = off "
                               "to start that way");
                W.prepare = 0;
            }
            if (e->kind == E_FINALIZE && code && strncmp(code, "22", 2) == 0)
                W.fin_data_error = 1;   /* see outcomes_sanitize */
        }
        W.seg_error = 1;
        PQclear(res);
        return;
    }
    switch (e->kind) {
    case E_CLAIM:
        start_after_claim(res, W.claim_from_start);
        if (W.claim_flushed && W.cur == NULL && W.next == NULL && PQntuples(res) > 0) {
            /* early start: run it while the server commits the claim (see the top) */
            W.cur = res;
            W.cur_n = PQntuples(res);
            W.cur_next = 0;
            W.unconfirmed = 1;
            count_claimed(res);     /* counted now: cur may be done before the commit is seen */
            W.n_claimed += (uint64_t) W.cur_n;
            return;
        }
        W.claimed = res;        /* kept: the batch's strings point into it */
        return;
    case E_FINALIZE:
        W.fin_matched = PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
        W.fin_seen = 1;
        stale_ids_set(res);
        break;
    case E_REGISTER:
        W.worker_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        snprintf(W.worker_id_s, sizeof(W.worker_id_s), "%" PRId64, W.worker_id);
        break;
    case E_JOB_STATES: {
        int committed = 0, open = 0;

        /* not running under our attempt any more = our COMMIT happened */
        for (int i = W.tx_unknown_start; i < W.tx_unknown_end && W.cur; i++) {
            if (still_ours(res, i))
                open++;
            else
                committed++;
        }
        rh_log_warning("ambiguous COMMIT of %d transactional job(s) resolved: %d no longer ran under our "
                       "attempt (committed, or rescued meanwhile), %d had not committed and are handed back "
                       "to run again", W.tx_unknown_end - W.tx_unknown_start, committed, open);
        W.tx_unknown_start = W.tx_unknown_end = 0;
        break;
    }
    case E_ALIVE:
        if (PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
            /*
             * The reaper declared us dead (our node's lease ran out, say)
             * and our jobs were or will be handed to others: stop at once
             * and let the master start a fresh worker.  If this round's
             * finalize result was read, the jobs in it that the fence
             * rejected are reported here, as its sync would have (the
             * Sync is sent, so the server ends the round without us).
             */
            report_stale();
            rh_log_error("worker %s was declared dead in rhino.workers; exiting for a fresh start",
                         W.worker_id_s);
            exit(RH_EXIT_ERROR);
        }
        break;
    default:
        break;
    }
    PQclear(res);
}

/* Read whatever results are complete; never call PQgetResult while busy. */
static void
drain_results(void)
{
    while (W.conn && W.fifo_len > 0 && !PQisBusy(W.conn)) {
        rh_expect_t *e = fifo_peek();
        PGresult    *res = PQgetResult(W.conn);

        if (res == NULL) {
            if (e->kind != E_SYNC && e->got) {
                fifo_pop();         /* end of this query's results */
                continue;
            }
            if (PQstatus(W.conn) == CONNECTION_BAD) {
                w_broken("connection lost");
                return;
            }
            break;
        }
        if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            if (e->kind != E_SYNC) {
                w_broken("internal error: sync result out of order");
                return;
            }
            fifo_pop();
            on_sync(e->seg);
            continue;
        }
        if (e->kind == E_SYNC) {
            /*
             * An error raised at commit time, after the last statement's
             * result: the transaction rolled back.  The Sync's own result
             * did not always follow it (the worker then waited for it
             * forever: seen under ASan, with the error and the Sync in one
             * read), so start over on a fresh connection, as after a lost
             * one: the finalizes are replayed (fenced), the rest handed
             * back, a batch started early dropped.  Commits that fail are
             * rare enough for that.
             */
            rh_log_error("commit failed: %s", rh_db_error(W.conn, res));
            PQclear(res);
            w_broken("the transaction's commit failed");
            return;
        }
        e->got = 1;
        on_result(e, res);
        if (PQstatus(W.conn) == CONNECTION_BAD) {
            w_broken("connection lost");
            return;
        }
    }
}

/* ---------------------------------------------------------------------- */
/* the cycle                                                              */

static void
send_final(void)
{
    const char *p1[1] = { W.worker_id_s };

    if (W.pending.n > 0) {
        outcomes_move(&W.inflight, &W.pending);
        if (send_finalize(&W.inflight, SEG_FINAL) < 0)
            return;
    }
    if (((W.cur && W.cur_next < W.cur_n) || W.next) && send_release_unstarted(SEG_FINAL) < 0)
        return;
    if (send_query(RH_STMT_WORKER_END, E_END, SEG_FINAL, p1) < 0 || send_sync(SEG_FINAL) < 0)
        return;
    W.final_sent = 1;
    flush_out();
}

/*
 * Decide what to send next and run what is in hand.  Called after every
 * event; does nothing while a round is in flight.
 */
static void
w_step(void)
{
    for (;;) {
        int sent = 0, claim;

        if (W.unconfirmed && W.cur && W.connected && !w_stop) {
            run_batch(1);
            drain_results();        /* the commit may have come meanwhile */
        }
        if (!W.connected || W.round_inflight > 0 || W.final_sent)
            return;

        if (w_stop) {
            if (!W.draining) {
                W.draining = 1;
                rh_log_info("draining: releasing %d claimed jobs that did not start",
                            (W.cur ? W.cur_n - W.cur_next : 0) + (W.next ? PQntuples(W.next) : 0));
            }
            send_final();
            return;
        }

        /*
         * Outcomes to send and no batch behind the one in hand: claim in the
         * same round even after an empty claim, since the finalize may free a
         * slot of a limited queue (sql/005_limits.sql) that only this round
         * can take at once; an idle worker would wait for its poll.
         */
        claim = (W.claim_due || W.pending.n > 0) && W.next == NULL;
        if (W.pending.n > 0) {
            /* with a claim behind it, one transaction: see SEG_ROUND */
            outcomes_move(&W.inflight, &W.pending);
            if (send_finalize(&W.inflight, claim ? SEG_ROUND : SEG_FINALIZE) < 0)
                return;
            if (!claim && send_sync(SEG_FINALIZE) < 0)
                return;
            sent = 1;
        }
        if (claim) {
            const char *params[6] = { W.queues_lit, W.batch_s, W.worker_id_s, NULL, NULL, NULL };
            rh_buf_t    a[3];
            double      now;
            rh_seg_t    seg = sent ? SEG_ROUND : SEG_CLAIM;
            int         rc;

            /*
             * The monotonic clock, read now: a drain can stay in one
             * callback for many rounds (handlers run, results are read in
             * between), so ev_now would say when that callback began; and
             * ev_now follows the wall clock, which can step (NTP, a restored
             * VM) and so stop the liveness checks and the rescans for as long.
             */
            now = rh_mono_now();

            W.claim_due = 0;
            W.claim_seq = rh_shm_load(&W.root->notify_seq);
            /* the limited claim only while the reaper sees limits on our queues: see rh_sql.c */
            W.claim_stmt = rh_shm_load(&W.shm->limited) ? RH_STMT_CLAIM_LIMITED : RH_STMT_CLAIM;
            W.claim_from_start = W.claim_stmt != RH_STMT_CLAIM || start_params(a, params, now);
            rc = send_query(W.claim_stmt, E_CLAIM, seg, params);
            if (!W.claim_from_start)
                for (int k = 0; k < 3; k++)
                    free(a[k].s);
            if (rc < 0)
                return;
            if (now - W.last_alive_check > W.cfg->lease / 3) {
                const char *p1[1] = { W.worker_id_s };
                W.last_alive_check = now;
                if (send_query(RH_STMT_WORKER_ALIVE, E_ALIVE, seg, p1) < 0)
                    return;
            }
            /* nothing in hand and no finalize in this transaction: ask for the rows before the commit */
            if (seg == SEG_CLAIM && W.cur == NULL && W.cfg->early_start) {
                if (!PQsendFlushRequest(W.conn)) {
                    w_broken(rh_db_error(W.conn, NULL));
                    return;
                }
                W.claim_flushed = 1;
            }
            if (send_sync(seg) < 0)
                return;
            sent = 1;
        }
        if (sent) {
            if (rh_metrics)
                __atomic_fetch_add(&rh_metrics->round_trips, 1, __ATOMIC_RELAXED);
            if (flush_out() < 0)
                return;
        }

        /* the round is on its way: run the batch in hand meanwhile */
        if (W.cur) {
            run_batch(0);
            drain_results();        /* results may have come while handlers ran */
            if (W.round_inflight == 0)
                continue;           /* send this batch's outcomes */
            return;
        }
        if (!sent && !ev_is_active(&W.timer)) {
            /*
             * A notification came after our last claim was sent, while we
             * were busy: the master woke nobody (no worker was idle), and
             * that claim may have missed the job.  Look again now.
             */
            if (rh_shm_load(&W.root->notify_seq) != W.claim_seq) {
                W.claim_due = 1;
                continue;
            }
            /*
             * Idle: look again after poll_interval, or sooner when the
             * master, told by a notification, wakes us (SIGUSR1, on_wake).
             */
            ev_timer_set(&W.timer, W.cfg->poll_interval, 0);
            ev_timer_start(W.loop, &W.timer);
            rh_shm_store(&W.shm->idle, 1);
        }
        return;
    }
}

static void
on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    if (W.connecting) {
        w_connect_start();      /* continue PQconnectPoll */
        return;
    }
    if (revents & EV_READ) {
        if (!PQconsumeInput(W.conn)) {
            w_broken(rh_db_error(W.conn, NULL));
            return;
        }
    }
    /* a server blocked on its own sends stops reading ours: flush after reading too */
    if (W.io_events & EV_WRITE) {
        if (flush_out() < 0)
            return;
    }
    drain_results();
    w_step();
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (W.conn == NULL) {
        w_connect_start();
        return;
    }
    if (!W.connected && !W.connecting && W.round_inflight == 0) {
        /* setup failed earlier: reconnect from scratch */
        w_broken("retrying setup");
        return;
    }
    W.claim_due = 1;
    rh_shm_store(&W.shm->idle, 0);
    w_step();
}

static void
on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    if (w_stop && W.conn == NULL && W.pending.n == 0) {
        rh_log_info("stopping while disconnected; nothing to finalize");
        exit(RH_EXIT_OK);
    }
    if (w_nudged) {
        w_nudged = 0;
        rh_shm_store(&W.shm->idle, 0);
        if (W.next == NULL)
            W.claim_due = 1;    /* new jobs: claim now instead of at the next poll */
    }
    /*
     * Connected, the timer is the idle poll, which the claim replaces.
     * Otherwise it is the reconnect backoff or the setup retry, the only
     * thing that will bring the connection back (w_step does nothing
     * while disconnected): stopping it left the worker waiting forever,
     * whether a notification woke it or SIGTERM asked it to drain the
     * outcomes it holds.
     */
    if (W.connected)
        ev_timer_stop(W.loop, &W.timer);
    w_step();
}

/* SIGUSR1 from the master (wake_idle): only a flag and a wake-up, as in on_signal. */
static void
on_nudge(int sig)
{
    (void) sig;
    w_nudged = 1;
    ev_async_send(W.loop, &W.wake);
}

static void
on_signal(int sig)
{
    w_stop = 1;
    /*
     * Orphaned (the master was killed, PR_SET_PDEATHSIG sent this): nobody
     * enforces deadlines any more, so give the drain a short while and let
     * SIGALRM end the process; the jobs left are rescued by lease expiry.
     */
    if (getppid() != W.master_pid)
        alarm((unsigned) ceil(W.cfg->fast_shutdown_timeout) + 1);
    ev_async_send(W.loop, &W.wake);
}

/* ---------------------------------------------------------------------- */
/* connection                                                             */

/* Send the setup transaction once the connection is up. */
static void
send_setup(void)
{
    if (W.worker_id == 0) {
        char        node[24], slot[16], gen[16], pid[16], lease[32];
        const char *p[5] = { node, slot, gen, pid, lease };

        snprintf(node, sizeof(node), "%" PRId64, W.node_id);
        snprintf(slot, sizeof(slot), "%d", W.slot);
        snprintf(gen, sizeof(gen), "%d", W.generation);
        snprintf(pid, sizeof(pid), "%d", (int) getpid());
        snprintf(lease, sizeof(lease), "%.3f", W.cfg->lease);
        if (send_query(RH_STMT_WORKER_REGISTER, E_REGISTER, SEG_SETUP, p) < 0)
            return;
    } else {
        const char *p1[1] = { W.worker_id_s };

        /*
         * A transactional batch whose COMMIT went unanswered: read where
         * each of its jobs stands before anything else touches them.
         */
        if (W.tx_unknown_end > W.tx_unknown_start && W.cur) {
            char       *ids = cur_ids_literal(W.tx_unknown_start, W.tx_unknown_end);
            const char *p[1] = { ids };
            int         rc;

            rc = send_query(RH_STMT_JOB_STATES, E_JOB_STATES, SEG_SETUP, p);
            free(ids);
            if (rc < 0)
                return;
        }
        /* replay the finalizes whose commit we never saw, then hand back the rest */
        if (W.pending.n > 0) {
            outcomes_move(&W.inflight, &W.pending);
            if (send_finalize(&W.inflight, SEG_SETUP) < 0)
                return;
        }
        if (send_query(RH_STMT_RELEASE_MINE, E_RELEASE_MINE, SEG_SETUP, p1) < 0 ||
            send_query(RH_STMT_WORKER_ALIVE, E_ALIVE, SEG_SETUP, p1) < 0)
            return;
    }
    if (send_sync(SEG_SETUP) < 0)
        return;
    flush_out();
}

/* Start, or continue, a non-blocking connect driven by the loop. */
static void
w_connect_start(void)
{
    PostgresPollingStatusType st;

    if (W.conn == NULL) {
        W.conn = rh_db_connect_start(W.cfg->dsn, "worker");
        if (W.conn == NULL)
            rh_fatal("out of memory");
        if (PQstatus(W.conn) == CONNECTION_BAD) {
            w_broken(rh_db_error(W.conn, NULL));
            return;
        }
        W.connecting = 1;
        W.io_events = 0;
        ev_io_init(&W.io, on_io, PQsocket(W.conn), EV_WRITE);
        ev_io_start(W.loop, &W.io);
        W.io_events = EV_WRITE;
        return;
    }
    st = PQconnectPoll(W.conn);
    switch (st) {
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:
        /* the socket may change during connect (multiple hosts) */
        ev_io_stop(W.loop, &W.io);
        ev_io_set(&W.io, PQsocket(W.conn), st == PGRES_POLLING_READING ? EV_READ : EV_WRITE);
        ev_io_start(W.loop, &W.io);
        W.io_events = st == PGRES_POLLING_READING ? EV_READ : EV_WRITE;
        return;
    case PGRES_POLLING_FAILED:
        w_broken(rh_db_error(W.conn, NULL));
        return;
    default:
        break;
    }
    W.connecting = 0;
    if (PQsetnonblocking(W.conn, 1) != 0 || !PQenterPipelineMode(W.conn)) {
        w_broken(rh_db_error(W.conn, NULL));
        return;
    }
    io_update(0);
    send_setup();
}

/*
 * The connection is gone (or unusable): forget the pipeline, keep what can
 * be replayed, and reconnect with capped exponential backoff and jitter.
 */
static void
w_broken(const char *why)
{
    char msg[512];

    snprintf(msg, sizeof(msg), "%s", why && *why ? why : "unknown error");
    msg[strcspn(msg, "\n")] = '\0';
    if (W.conn) {
        ev_io_stop(W.loop, &W.io);
        PQfinish(W.conn);
        W.conn = NULL;
    }
    W.io_events = 0;
    W.connecting = 0;
    W.connected = 0;
    memset(W.prepared, 0, sizeof(W.prepared));      /* a new session prepares anew */
    W.tx_open = 0;
    W.fifo_len = 0;
    W.fin_seen = 0;
    W.fin_data_error = 0;
    W.round_inflight = 0;
    W.seg_error = 0;
    if (W.claimed) {
        PQclear(W.claimed);
        W.claimed = NULL;
    }
    /* unknown fate: replay (fenced, so harmless if it did commit) */
    outcomes_move(&W.pending, &W.inflight);
    /* but never for a claim whose commit we did not see (early start): they run again */
    if (W.unconfirmed)
        outcomes_confirm(&W.pending, 0);
    W.unconfirmed = 0;
    W.claim_flushed = 0;
    start_clear(W.start);       /* a new session starts every queue at its first entry */
    start_clear(W.start_next);
    W.draining = 0;
    W.final_sent = 0;
    /*
     * The final segment's second chance belongs to the connection, as the
     * rest of the drain's state above and fin_data_error (a round's) do: the
     * drain starts over on the new one with a new final segment, which gets
     * its own sanitized resend.  Today that segment carries no outcomes
     * (send_setup replays them first, and sanitizes them if refused); this
     * keeps the rule from depending on that order.  Still once per
     * connection: a sanitized resend refused again has another cause.
     */
    W.final_resent = 0;
    /* not idle until connected again: the master's wake-ups go to workers that can claim */
    rh_shm_store(&W.shm->idle, 0);

    W.reconnect_delay = W.reconnect_delay == 0 ? 0.1 : W.reconnect_delay * 2;
    if (W.reconnect_delay > 5)
        W.reconnect_delay = 5;
    if (w_stop && W.pending.n == 0) {
        rh_log_info("connection lost while stopping (%s); nothing left to finalize", msg);
        exit(RH_EXIT_OK);
    }
    rh_log_error("database connection lost: %s; reconnecting in %.1f s (%d outcomes to replay)",
                 msg, W.reconnect_delay, W.pending.n);
    ev_timer_stop(W.loop, &W.timer);
    ev_timer_set(&W.timer, W.reconnect_delay * (0.5 + rh_rand_unit(&W.rng) / 2), 0);
    ev_timer_start(W.loop, &W.timer);
}

/* ---------------------------------------------------------------------- */

static void
build_queue_literal(void)
{
    char  *lit = rh_db_text_array(W.cfg->queues, W.cfg->nqueues);
    size_t len;

    if (lit == NULL)
        rh_fatal("out of memory");
    len = strlen(lit);
    if (len >= sizeof(W.queues_lit))
        rh_fatal("[worker] queues: the list is too long (%zu bytes; at most %zu)", len, sizeof(W.queues_lit) - 1);
    memcpy(W.queues_lit, lit, len + 1);
    free(lit);
}

void
rh_worker_main(const rh_config_t *cfg, rh_pin_t *pin, int slot, int generation, int64_t node_id, rh_shm_t *shm)
{
    char             role[32], err[1024];
    struct sigaction sa;

    memset(&W, 0, sizeof(W));
    /* never done: due at the first claim (the monotonic clock may read little after boot) */
    W.last_rescan = W.last_alive_check = -INFINITY;
    W.cfg = cfg;
    W.prepare = cfg->prepare;
    W.root = shm;
    W.shm = &shm->slot[slot];
    W.master_pid = getppid();
    W.slot = slot;
    W.generation = generation;
    W.node_id = node_id;
    W.rng = rh_rand_seed();
    snprintf(role, sizeof(role), "worker.%d", slot);
    rh_log_set_role(role);
    snprintf(W.batch_s, sizeof(W.batch_s), "%d", cfg->batch_size);
    build_queue_literal();
    W.start = calloc((size_t) cfg->nqueues, sizeof(rh_start_t));
    W.start_next = calloc((size_t) cfg->nqueues, sizeof(rh_start_t));
    if (W.start == NULL || W.start_next == NULL)
        rh_fatal("out of memory");

    /*
     * Handlers are loaded here, after fork, from the copies the master took
     * and checked when it accepted cfg (rh_pin.c): a worker respawned after
     * a refused reload, or after the files were overwritten, runs the same
     * code as its peers.  Loading can still fail where the check passed (a
     * constructor that depends on the moment), so it stays fatal.
     */
    if (rh_loader_load_pinned(&W.reg, pin, err, sizeof(err)) < 0)
        rh_fatal("%s", err);
    rh_pin_release(pin);
    rh_loader_kinds(&W.reg, W.kinds, sizeof(W.kinds));

    W.loop = ev_default_loop(EVFLAG_AUTO);
    if (W.loop == NULL)
        rh_fatal("cannot create the event loop");
    ev_async_init(&W.wake, on_wake);
    ev_async_start(W.loop, &W.wake);
    ev_init(&W.timer, on_timer);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_nudge;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    /* blocked since the fork (child_init): a stop sent while the handlers loaded is taken now */
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGINT);
    sigprocmask(SIG_UNBLOCK, &sa.sa_mask, NULL);

    w_connect_start();
    ev_run(W.loop, 0);
    rh_fatal("worker event loop ended unexpectedly");
}
