/*
 * rb_load.c - enqueueing for rhino-bench: COPY, librhino's
 * rhino_enqueue_many(), concurrent rhino.enqueue() clients, and the trickle.
 *
 * The concurrent clients and the trickle use one thread and one connection
 * per client, because that is what an application's connection pool looks
 * like to the server.  Threads never call rb_die (exit() under running
 * threads would be untidy): they record their first error and stop, and the
 * main thread reports it after joining them.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rhino-client.h"
#include "rh_db.h"
#include "rh_sql.h"
#include "rb_load.h"
#include "rb_pg.h"
#include "rb_report.h"
#include "rb_util.h"

/* COPY data goes out in chunks of this size: one CopyData message per chunk (as rhinoctl does). */
#define RB_COPY_CHUNK (256 * 1024)

/*
 * The text of one COPY row around its payload, for the column list of
 * RH_STMT_CTL_COPY_MIN, whatever it is: rhinoctl's statement may gain columns
 * (a later schema's), and COPY with a column list does not fall back to the
 * column defaults, so each is spelled out; a column the harness does not
 * know gets \N (NULL).  head gets everything before the payload, tail the
 * rest with the newline.
 */
static void
copy_row_shape(const char *queue, const char *kind, const char *run_at, rb_buf_t *head, rb_buf_t *tail)
{
    const char *sql = rh_sql(RH_STMT_CTL_COPY_MIN)->sql;
    const char *open = strchr(sql, '('), *close = open ? strchr(open, ')') : NULL;
    int         seen_payload = 0;

    if (open == NULL || close == NULL)
        rb_die("internal error: RH_STMT_CTL_COPY_MIN has no column list: %s", sql);
    rb_buf_add(head, "", 0);
    for (const char *p = open + 1; p < close;) {
        size_t      n;
        char        col[64];
        const char *val;

        while (*p == ' ' || *p == ',')
            p++;
        n = strcspn(p, ", )");
        snprintf(col, sizeof(col), "%.*s", (int) n, p);
        p += n;
        if (col[0] == '\0')
            continue;
        if (strcmp(col, "payload") == 0) {
            seen_payload = 1;
            continue;
        }
        if (strcmp(col, "kind") == 0)
            val = kind;
        else if (strcmp(col, "queue") == 0)
            val = queue;
        else if (strcmp(col, "priority") == 0)
            val = "0";
        else if (strcmp(col, "max_attempts") == 0)
            val = "25";
        else if (strcmp(col, "run_at") == 0)
            val = run_at;
        else if (strcmp(col, "state") == 0)
            val = "available";
        else
            val = "\\N";
        /* "v1\tv2\t" PAYLOAD "\tv3\tv4\n" */
        if (seen_payload) {
            rb_buf_puts(tail, "\t");
            rb_buf_puts(tail, val);
        } else {
            rb_buf_puts(head, val);
            rb_buf_puts(head, "\t");
        }
    }
    if (!seen_payload)
        rb_die("internal error: RH_STMT_CTL_COPY_MIN has no payload column: %s", sql);
    rb_buf_puts(tail, "\n");
}

double
rb_load_copy(PGconn *conn, const char *queue, const char *kind, long long n, const char *label,
             long long *first_id, long long *last_id)
{
    char        detail[64], num[32];
    rb_buf_t    buf = { 0 }, head = { 0 }, tail = { 0 };
    PGresult   *res;
    double      t0 = rb_mono(), seconds;

    rb_pg_do(conn, RB_SQL_BEGIN, NULL);
    res = rb_pg_run(conn, RB_SQL_NOW, NULL);
    copy_row_shape(queue, kind, PQgetvalue(res, 0, 0), &head, &tail);
    PQclear(res);

    res = PQexec(conn, rh_sql(RH_STMT_CTL_COPY_MIN)->sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        char msg[512];

        snprintf(msg, sizeof(msg), "%s", rh_db_error(conn, res));
        PQclear(res);
        rb_die("COPY into rhino.jobs failed: %s", msg);
    }
    PQclear(res);
    for (long long i = 1; i <= n; i++) {
        rb_buf_add(&buf, head.data, head.len);
        rb_buf_printf(&buf, "{\"n\": %lld}", i);
        rb_buf_add(&buf, tail.data, tail.len);
        if (buf.len >= RB_COPY_CHUNK || i == n) {
            if (PQputCopyData(conn, buf.data, (int) buf.len) != 1)
                rb_die("COPY into rhino.jobs: sending the data failed: %s", rh_db_error(conn, NULL));
            buf.len = 0;
            if (label != NULL) {
                snprintf(detail, sizeof(detail), "%s jobs", rb_fmt_int(num, sizeof(num), i));
                rb_progress(label, (double) i / (double) n, detail);
            }
            if (rb_interrupted) {
                PQputCopyEnd(conn, "rhino-bench was interrupted");
                PQclear(PQgetResult(conn));
                rb_die("interrupted during the COPY (rolled back)");
            }
        }
    }
    rb_buf_free(&buf);
    rb_buf_free(&head);
    rb_buf_free(&tail);
    if (PQputCopyEnd(conn, NULL) != 1)
        rb_die("COPY into rhino.jobs: ending it failed: %s", rh_db_error(conn, NULL));
    res = PQgetResult(conn);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        char msg[512];

        snprintf(msg, sizeof(msg), "%s", rh_db_error(conn, res));
        PQclear(res);
        rb_die("COPY into rhino.jobs failed: %s", msg);
    }
    PQclear(res);
    while ((res = PQgetResult(conn)) != NULL)
        PQclear(res);
    *last_id = rb_pg_int(conn, RB_SQL_LAST_ID, NULL);
    *first_id = *last_id - n + 1;
    rb_pg_do(conn, RB_SQL_COMMIT, NULL);
    seconds = rb_mono() - t0;
    if (label != NULL)
        rb_progress_clear();
    return seconds;
}

/* ---- librhino: rhino_enqueue_many() ------------------------------------------ */

double
rb_load_capi(PGconn *conn, const char *queue, const char *kind, long long n, int per_call,
             const char *label, long long *first_id)
{
    rhino_job_spec *specs = calloc((size_t) per_call, sizeof(*specs));
    char           *payloads = malloc((size_t) per_call * 32);
    char            detail[64], num[32];
    rhino_error     err;
    double          t0, seconds;

    if (specs == NULL || payloads == NULL)
        rb_die("out of memory");
    /* the ids the calls will take: after the sequence's last (the id cache is per session) */
    *first_id = rb_pg_int(conn, RB_SQL_SEQ_LAST, NULL) + 1;
    t0 = rb_mono();
    for (long long done = 0; done < n;) {
        int k = n - done < per_call ? (int) (n - done) : per_call;

        /* the payloads are made between the calls, as an application's would be */
        for (int i = 0; i < k; i++) {
            char *pl = payloads + (size_t) i * 32;

            snprintf(pl, 32, "{\"n\": %lld}", done + i + 1);
            specs[i].kind = kind;
            specs[i].payload = pl;
            specs[i].opts.queue = queue;
        }
        if (rhino_enqueue_many(conn, specs, (size_t) k, NULL, NULL, &err) < 0)
            rb_die("rhino_enqueue_many failed%s%s: %s", err.sqlstate[0] ? " with SQLSTATE " : "", err.sqlstate,
                   err.message);
        done += k;
        if (label != NULL) {
            snprintf(detail, sizeof(detail), "%s jobs", rb_fmt_int(num, sizeof(num), done));
            rb_progress(label, (double) done / (double) n, detail);
        }
        if (rb_interrupted)
            rb_die("interrupted after %lld of %lld jobs (those are committed)", done, n);
    }
    seconds = rb_mono() - t0;
    if (label != NULL)
        rb_progress_clear();
    free(specs);
    free(payloads);
    return seconds;
}

/* ---- threads of clients --------------------------------------------------- */

typedef struct {
    pthread_t          thread;
    int                index;
    PGconn            *conn;
    char               error[512];
    /* shared */
    pthread_barrier_t *start;
    atomic_llong      *done;
    /* rb_load_sql */
    const rb_sql_load_t *sql;
    long long          from, count;         /* this client's jobs: from .. from+count-1 */
    /* rb_load_trickle */
    const rb_trickle_t *trickle;
    atomic_llong      *next, *late;
    const double      *t0;                  /* CLOCK_MONOTONIC of job 0's slot, set before the barrier */
    int64_t           *acked_us;            /* per job i: CLOCK_REALTIME when its enqueue returned */
} rb_client_t;

static void
client_error(rb_client_t *c, const char *what, const PGresult *res)
{
    if (c->error[0] == '\0')
        snprintf(c->error, sizeof(c->error), "client %d: %s: %s", c->index, what, rh_db_error(c->conn, res));
}

static PGconn *
client_connect(const char *dsn, int index)
{
    const char *keys[] = { "dbname", "fallback_application_name", NULL };
    const char *vals[] = { dsn, "rhino-bench", NULL };
    PGconn     *conn = PQconnectdbParams(keys, vals, 1);

    if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
        rb_die("client %d cannot connect to the database: %s", index,
               conn ? rh_db_error(conn, NULL) : "out of memory");
    return conn;
}

/*
 * Producers prepare rhino.enqueue() once per connection, as most drivers do
 * for a statement they send again and again (pgx, JDBC after five uses,
 * psycopg after five, Rails), so that the server parses and plans it once:
 * 0.1 ms of a call of about 0.2 ms of server time.  --no-prepare sends it
 * unnamed each time, as node-postgres and libpq's PQexecParams do.
 */
#define RB_ENQUEUE_NAME "rhino_bench_enqueue"

static void
client_prepare(rb_client_t *c, int prepare)
{
    PGresult *res;

    if (!prepare)
        return;
    res = PQprepare(c->conn, RB_ENQUEUE_NAME, rb_pg_sql(RB_SQL_ENQUEUE), rb_pg_nparams(RB_SQL_ENQUEUE), NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rb_die("client %d cannot prepare rhino.enqueue(): %s", c->index, rh_db_error(c->conn, res));
    PQclear(res);
}

/* Send one rhino.enqueue() call: prepared or unnamed (client_prepare). */
static int
enqueue_send(rb_client_t *c, int prepare, const char *const *p)
{
    if (prepare)
        return PQsendQueryPrepared(c->conn, RB_ENQUEUE_NAME, rb_pg_nparams(RB_SQL_ENQUEUE), p, NULL, NULL, 0);
    return PQsendQueryParams(c->conn, rb_pg_sql(RB_SQL_ENQUEUE), rb_pg_nparams(RB_SQL_ENQUEUE), NULL, p, NULL,
                             NULL, 0);
}

/* The same, waiting for its result. */
static PGresult *
enqueue_exec(rb_client_t *c, int prepare, const char *const *p)
{
    if (prepare)
        return PQexecPrepared(c->conn, RB_ENQUEUE_NAME, rb_pg_nparams(RB_SQL_ENQUEUE), p, NULL, NULL, 0);
    return PQexecParams(c->conn, rb_pg_sql(RB_SQL_ENQUEUE), rb_pg_nparams(RB_SQL_ENQUEUE), NULL, p, NULL, NULL, 0);
}

/* One rhino.enqueue() call's parameters (RB_SQL_ENQUEUE): kind, payload, queue. */
static void
enqueue_params(const char **p, const char *kind, const char *payload, const char *queue)
{
    p[0] = kind;
    p[1] = payload;
    p[2] = queue;
}

/* Send BEGIN, the calls, COMMIT and a Sync in one flush, then read the tx+2 results and the Sync's. */
static int
sql_tx_pipelined(rb_client_t *c, long long from, int count)
{
    const char      *p[3];
    char             payload[64];
    PGresult        *res;
    int              ok = 1;

    if (PQsendQueryParams(c->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) != 1) {
        client_error(c, "sending BEGIN", NULL);
        return 0;
    }
    for (int k = 0; k < count; k++) {
        snprintf(payload, sizeof(payload), "{\"n\": %lld}", from + k);
        enqueue_params(p, c->sql->kind, payload, c->sql->queue);
        if (enqueue_send(c, c->sql->prepare, p) != 1) {
            client_error(c, "sending rhino.enqueue()", NULL);
            return 0;
        }
    }
    if (PQsendQueryParams(c->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) != 1 || PQpipelineSync(c->conn) != 1) {
        client_error(c, "sending COMMIT", NULL);
        return 0;
    }
    for (int k = 0; k < count + 2; k++) {
        res = PQgetResult(c->conn);
        if (res == NULL) {
            client_error(c, "reading a result", NULL);
            return 0;
        }
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
            client_error(c, k == 0 ? "BEGIN" : k == count + 1 ? "COMMIT" : "rhino.enqueue()", res);
            ok = 0;
        }
        PQclear(res);
        PQclear(PQgetResult(c->conn));      /* the NULL that ends each query's results */
    }
    res = PQgetResult(c->conn);
    if (PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
        client_error(c, "reading the end of the pipeline", res);
        ok = 0;
    }
    PQclear(res);
    return ok;
}

/* The same transaction, one round trip per statement. */
static int
sql_tx_plain(rb_client_t *c, long long from, int count)
{
    const char      *p[3];
    char             payload[64];
    PGresult        *res = PQexec(c->conn, "BEGIN");

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        client_error(c, "BEGIN", res);
        PQclear(res);
        return 0;
    }
    PQclear(res);
    for (int k = 0; k < count; k++) {
        snprintf(payload, sizeof(payload), "{\"n\": %lld}", from + k);
        enqueue_params(p, c->sql->kind, payload, c->sql->queue);
        res = enqueue_exec(c, c->sql->prepare, p);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            client_error(c, "rhino.enqueue()", res);
            PQclear(res);
            PQclear(PQexec(c->conn, "ROLLBACK"));
            return 0;
        }
        PQclear(res);
    }
    res = PQexec(c->conn, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        client_error(c, "COMMIT", res);
        PQclear(res);
        return 0;
    }
    PQclear(res);
    return 1;
}

static void *
sql_client(void *arg)
{
    rb_client_t *c = arg;

    if (c->sql->pipeline && PQenterPipelineMode(c->conn) != 1)
        client_error(c, "entering pipeline mode", NULL);
    pthread_barrier_wait(c->start);
    for (long long i = 0; i < c->count && c->error[0] == '\0' && !rb_interrupted; i += c->sql->tx) {
        int k = (int) (c->count - i < c->sql->tx ? c->count - i : c->sql->tx);
        int ok = c->sql->pipeline ? sql_tx_pipelined(c, c->from + i, k) : sql_tx_plain(c, c->from + i, k);

        if (ok)
            atomic_fetch_add(c->done, k);
    }
    return NULL;
}

/* Start the threads, wait for them to connect, run, report progress, join; dies on a client's error. */
static double
run_clients(rb_client_t *cl, int n, void *(*fn)(void *), atomic_llong *done, long long total, const char *label,
            double *t0_out)
{
    pthread_barrier_t start;
    double            t0, t1;
    char              detail[64], num[32];

    if (pthread_barrier_init(&start, NULL, (unsigned) n + 1) != 0)
        rb_die("pthread_barrier_init failed");
    for (int i = 0; i < n; i++) {
        cl[i].start = &start;
        cl[i].done = done;
        if (pthread_create(&cl[i].thread, NULL, fn, &cl[i]) != 0)
            rb_die("cannot start client thread %d: %s", i, strerror(errno));
    }
    t0 = rb_mono();
    if (t0_out != NULL)
        *t0_out = t0 + 0.05;    /* the trickle's first slot: the threads are past the barrier by then */
    pthread_barrier_wait(&start);
    for (;;) {
        long long d = atomic_load(done);

        if (d >= total)
            break;
        /* the threads stop on an error or an interrupt; join them then */
        int stopped = rb_interrupted;
        for (int i = 0; i < n && !stopped; i++)
            stopped = cl[i].error[0] != '\0';
        if (stopped)
            break;
        snprintf(detail, sizeof(detail), "%s jobs", rb_fmt_int(num, sizeof(num), d));
        rb_progress(label, (double) d / (double) total, detail);
        rb_sleep(0.05);
    }
    for (int i = 0; i < n; i++)
        pthread_join(cl[i].thread, NULL);
    t1 = rb_mono();
    rb_progress_clear();
    pthread_barrier_destroy(&start);
    for (int i = 0; i < n; i++) {
        PQfinish(cl[i].conn);
        cl[i].conn = NULL;
    }
    rb_check_interrupt();
    for (int i = 0; i < n; i++)
        if (cl[i].error[0] != '\0')
            rb_die("%s", cl[i].error);
    return t1 - t0;
}

double
rb_load_sql(const rb_sql_load_t *l)
{
    rb_client_t *cl = calloc((size_t) l->clients, sizeof(*cl));
    atomic_llong done = 0;
    long long    from = 1, per = l->n / l->clients, extra = l->n % l->clients;
    double       seconds;

    if (cl == NULL)
        rb_die("out of memory");
    /* connected before the clock starts: connection set-up is not enqueueing */
    for (int i = 0; i < l->clients; i++) {
        cl[i].index = i;
        cl[i].sql = l;
        cl[i].from = from;
        cl[i].count = per + (i < extra ? 1 : 0);
        from += cl[i].count;
        cl[i].conn = client_connect(l->dsn, i);
        client_prepare(&cl[i], l->prepare);
    }
    seconds = run_clients(cl, l->clients, sql_client, &done, l->n, "insert sql", NULL);
    free(cl);
    return seconds;
}

/* ---- the trickle ---------------------------------------------------------- */

static void
sleep_until(double mono)
{
    struct timespec ts;

    ts.tv_sec = (time_t) mono;
    ts.tv_nsec = (long) ((mono - (double) ts.tv_sec) * 1e9);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !rb_interrupted)
        ;
}

static void *
trickle_client(void *arg)
{
    rb_client_t     *c = arg;
    long long        total = (long long) (c->trickle->rate * c->trickle->seconds);

    pthread_barrier_wait(c->start);
    while (c->error[0] == '\0' && !rb_interrupted) {
        long long   i = atomic_fetch_add(c->next, 1);
        double      slot;
        const char *p[3];
        char        payload[96];
        PGresult   *res;

        if (i >= total)
            break;
        slot = *c->t0 + (double) i / c->trickle->rate;
        sleep_until(slot);
        if (rb_mono() - slot > 0.001)
            atomic_fetch_add(c->late, 1);
        /* the stamp is taken last, just before the call: the latency starts here */
        snprintf(payload, sizeof(payload), "{\"t\": %lld, \"i\": %lld}", (long long) rb_realtime_us(), i);
        enqueue_params(p, "bench.stamp", payload, c->trickle->queue);
        res = enqueue_exec(c, c->trickle->prepare, p);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            client_error(c, "rhino.enqueue()", res);
        else {
            c->acked_us[i] = rb_realtime_us();     /* its commit is confirmed: Rhino's part starts */
            atomic_fetch_add(c->done, 1);
        }
        PQclear(res);
    }
    return NULL;
}

void
rb_load_trickle(const rb_trickle_t *t, rb_trickle_result_t *out)
{
    rb_client_t *cl = calloc((size_t) t->clients, sizeof(*cl));
    atomic_llong done = 0, next = 0, late = 0;
    long long    total = (long long) (t->rate * t->seconds);
    double       t0 = 0, elapsed;

    if (cl == NULL)
        rb_die("out of memory");
    out->total = total;
    out->acked_us = rb_xmalloc((size_t) (total > 0 ? total : 1) * sizeof(int64_t));
    memset(out->acked_us, 0, (size_t) (total > 0 ? total : 1) * sizeof(int64_t));
    for (int i = 0; i < t->clients; i++) {
        cl[i].index = i;
        cl[i].trickle = t;
        cl[i].acked_us = out->acked_us;
        cl[i].next = &next;
        cl[i].late = &late;
        cl[i].t0 = &t0;
        cl[i].conn = client_connect(t->dsn, i);
        client_prepare(&cl[i], t->prepare);
    }
    /* t0 is written before the barrier the threads wait on, so they all read it set */
    elapsed = run_clients(cl, t->clients, trickle_client, &done, total, "trickle", &t0);
    out->sent = atomic_load(&done);
    out->late = atomic_load(&late);
    out->elapsed = elapsed - 0.05;
    out->t0_us = rb_realtime_us() - (int64_t) ((rb_mono() - t0) * 1e6);
    free(cl);
}
