/*
 * rhino_client.c - librhino: enqueue Rhino jobs from C on the caller's
 * connection, inside the caller's transaction (include/rhino-client.h).
 *
 * Everything here is argument checking, encoding and one or two
 * statements; the semantics (unique keys, throttle windows, wake-ups) live
 * in the SQL function rhino.enqueue_job, so that C, rhinoctl and every other
 * language enqueue the same way.  The one exception is the COPY fast path
 * of rhino_enqueue_many, which writes rhino.jobs directly and therefore
 * sends the wake-up itself.
 *
 * Never BEGIN, COMMIT or ROLLBACK: the transaction is the caller's.
 */
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rhino-client.h"
#include "rhino_client_json.h"
#include "rhino_client_sql.h"

/* Mirrors of the defaults of rhino.enqueue (sql/001_init.sql): COPY with a column list does not apply them. */
#define RHC_DEFAULT_QUEUE        "default"
#define RHC_DEFAULT_MAX_ATTEMPTS 25

/* COPY data goes out in chunks of this size: one CopyData message per chunk, not per job. */
#define RHC_COPY_CHUNK (256 * 1024)

/* What PostgreSQL's timestamptz can hold, and sane: years 1 to 9999. */
#define RHC_MIN_EPOCH (-62135596800.0)
#define RHC_MAX_EPOCH (253402300799.0)
/* Room for rhc_fmt_time's text, with the compiler's worst case for every field. */
#define RHC_TS_LEN    96

/* ---- errors ------------------------------------------------------------- */

static void
rhc_fail(rhino_error *err, const char *sqlstate, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
rhc_fail(rhino_error *err, const char *sqlstate, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", sqlstate ? sqlstate : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    /* one line, whatever the server or libpq put in */
    for (char *p = err->message; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

/*
 * A failed statement: the server's primary message and hint, never its
 * DETAIL or CONTEXT, which may quote the payload.  Without a server error
 * (a lost connection), libpq's message, which never holds the password.
 * what names the job ("jobs[3]: ") when known.
 */
static void
rhc_fail_pg(rhino_error *err, const char *fn, const char *what, PGconn *conn, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
    char        line[256];

    if (msg == NULL) {
        const char *m = (res && *PQresultErrorMessage(res)) ? PQresultErrorMessage(res) : PQerrorMessage(conn);

        snprintf(line, sizeof(line), "%s", *m ? m : "the statement returned an unexpected result");
        line[strcspn(line, "\n")] = '\0';
        msg = line;
    }
    if (hint != NULL)
        rhc_fail(err, state, "%s: %s%s (%s)", fn, what ? what : "", msg, hint);
    else
        rhc_fail(err, state, "%s: %s%s", fn, what ? what : "", msg);
}

/*
 * The connection must be usable for synchronous statements of ours: open,
 * out of pipeline mode, not busy, not in a failed transaction.
 */
static int
rhc_check_conn(PGconn *conn, const char *fn, rhino_error *err)
{
    if (conn == NULL) {
        rhc_fail(err, NULL, "%s: conn is NULL", fn);
        return -1;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        rhc_fail(err, NULL, "%s: the connection is not open: %s", fn, PQerrorMessage(conn));
        return -1;
    }
    if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF) {
        rhc_fail(err, NULL, "%s: the connection is in pipeline mode; leave it (PQexitPipelineMode) first", fn);
        return -1;
    }
    switch (PQtransactionStatus(conn)) {
    case PQTRANS_IDLE:
    case PQTRANS_INTRANS:
        return 0;
    case PQTRANS_INERROR:
        rhc_fail(err, NULL, "%s: the connection's transaction has failed; roll it back first", fn);
        return -1;
    case PQTRANS_ACTIVE:
        rhc_fail(err, NULL, "%s: a command is still in progress on the connection; read its results first", fn);
        return -1;
    default:
        rhc_fail(err, NULL, "%s: the connection is in an unknown state", fn);
        return -1;
    }
}

/* ---- checking and formatting the arguments ------------------------------- */

/* Characters, not bytes, as PostgreSQL's length() counts them in a UTF-8 database. */
static size_t
rhc_chars(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        if (((unsigned char) *s & 0xC0) != 0x80)
            n++;
    return n;
}

/*
 * One job's arguments, checked before anything is sent, so that a mistake
 * names its job and field and leaves the caller's transaction alone.  who
 * is "" for rhino_enqueue, "jobs[i]: " for rhino_enqueue_many.
 */
static int
rhc_check_job(const char *fn, const char *who, const char *kind, const char *payload,
              const rhino_enqueue_opts *o, rhino_error *err)
{
    size_t      at;
    const char *why;

    if (kind == NULL || *kind == '\0' || rhc_chars(kind) > 255) {
        rhc_fail(err, NULL, "%s: %skind must be 1 to 255 characters long", fn, who);
        return -1;
    }
    if (payload != NULL && rhino_client_json_check(payload, &at, &why) < 0) {
        rhc_fail(err, NULL, "%s: %spayload is not valid JSON: %s at byte %zu", fn, who, why, at);
        return -1;
    }
    if (o->queue != NULL && (*o->queue == '\0' || rhc_chars(o->queue) > 255)) {
        rhc_fail(err, NULL, "%s: %squeue must be 1 to 255 characters long (or NULL for \"default\")", fn, who);
        return -1;
    }
    if (o->run_at != NULL && !(*o->run_at >= RHC_MIN_EPOCH && *o->run_at <= RHC_MAX_EPOCH)) {
        rhc_fail(err, NULL, "%s: %srun_at must be seconds since the Epoch within the years 1 to 9999", fn, who);
        return -1;
    }
    if (o->priority < -32768 || o->priority > 32767) {
        rhc_fail(err, NULL, "%s: %spriority %d is outside -32768..32767", fn, who, o->priority);
        return -1;
    }
    if (o->max_attempts < 0) {
        rhc_fail(err, NULL, "%s: %smax_attempts must be at least 1 (or 0 for the default, 25)", fn, who);
        return -1;
    }
    if (!(o->timeout >= 0 && isfinite(o->timeout))) {
        rhc_fail(err, NULL, "%s: %stimeout must be a number of seconds above 0 (or 0 for none)", fn, who);
        return -1;
    }
    if (o->unique_key != NULL && (*o->unique_key == '\0' || rhc_chars(o->unique_key) > 512)) {
        rhc_fail(err, NULL, "%s: %sunique_key must be 1 to 512 characters long (or NULL for none)", fn, who);
        return -1;
    }
    if (!(o->unique_for >= 0 && isfinite(o->unique_for))) {
        rhc_fail(err, NULL, "%s: %sunique_for must be a number of seconds above 0 (or 0 for none)", fn, who);
        return -1;
    }
    if (o->unique_for > 0 && o->unique_key == NULL) {
        rhc_fail(err, NULL, "%s: %sunique_for needs a unique_key (the window is per key)", fn, who);
        return -1;
    }
    if (o->concurrency_key != NULL && *o->concurrency_key == '\0') {
        rhc_fail(err, NULL, "%s: %sconcurrency_key is empty (NULL for none)", fn, who);
        return -1;
    }
    return 0;
}

/* Seconds since the Epoch as "2030-01-02 03:04:05.678901+00": read alike under any DateStyle and TimeZone. */
static void
rhc_fmt_time(char *buf, size_t len, double epoch)
{
    double    whole = floor(epoch);
    long      usec = lround((epoch - whole) * 1e6);
    time_t    t;
    struct tm tm;

    if (usec >= 1000000) {
        whole += 1;
        usec -= 1000000;
    }
    t = (time_t) whole;
    gmtime_r(&t, &tm);
    snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d.%06ld+00", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
}

/* ---- a growable buffer: COPY rows, array literals ------------------------ */

typedef struct {
    char  *data;
    size_t len, cap;
    int    oom;                 /* an append failed: the content is incomplete */
} rhc_buf_t;

static void
rhc_reserve(rhc_buf_t *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 4096;
    char  *p;

    if (b->oom || b->len + more + 1 <= b->cap)
        return;
    while (cap < b->len + more + 1)
        cap *= 2;
    if ((p = realloc(b->data, cap)) == NULL) {
        b->oom = 1;
        return;
    }
    b->data = p;
    b->cap = cap;
}

static void
rhc_add(rhc_buf_t *b, const char *s, size_t n)
{
    rhc_reserve(b, n);
    if (b->oom)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void
rhc_adds(rhc_buf_t *b, const char *s)
{
    rhc_add(b, s, strlen(s));
}

/* s for COPY's text format: backslash, tab, newline and carriage return would end a field or a row. */
static void
rhc_add_copy(rhc_buf_t *b, const char *s)
{
    size_t n = strlen(s);
    char  *o;

    rhc_reserve(b, 2 * n);
    if (b->oom)
        return;
    o = b->data + b->len;
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\t': *o++ = '\\'; *o++ = 't';  break;
        case '\n': *o++ = '\\'; *o++ = 'n';  break;
        case '\r': *o++ = '\\'; *o++ = 'r';  break;
        default:   *o++ = s[i];              break;
        }
    }
    b->len = (size_t) (o - b->data);
    b->data[b->len] = '\0';
}

/*
 * One element of an array literal ('{"a","b\"c",NULL}'): quoted, with
 * backslash and double quote escaped; NULL for a NULL s.  The caller adds
 * the braces and commas.
 */
static void
rhc_add_elem(rhc_buf_t *b, const char *s)
{
    if (s == NULL) {
        rhc_adds(b, "NULL");
        return;
    }
    rhc_add(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\')
            rhc_add(b, "\\", 1);
        rhc_add(b, p, 1);
    }
    rhc_add(b, "\"", 1);
}

/* ---- one job ------------------------------------------------------------- */

/* Text of the numeric options. */
typedef struct {
    char run_at[RHC_TS_LEN], priority[16], max_attempts[16], timeout[64], unique_for[64];
} rhc_nums_t;

/*
 * The ten arguments of rhino.enqueue_job as text, in its order, NULL where
 * an option was left at zero so that the SQL's default applies.  The
 * pointers point into t, o and the caller's strings.
 */
static void
rhc_args(const char *kind, const char *payload, const rhino_enqueue_opts *o, rhc_nums_t *t, const char *v[10])
{
    if (o->run_at != NULL)
        rhc_fmt_time(t->run_at, sizeof(t->run_at), *o->run_at);
    snprintf(t->priority, sizeof(t->priority), "%d", o->priority);
    snprintf(t->max_attempts, sizeof(t->max_attempts), "%d", o->max_attempts);
    snprintf(t->timeout, sizeof(t->timeout), "%.17g", o->timeout);
    snprintf(t->unique_for, sizeof(t->unique_for), "%.17g", o->unique_for);
    v[0] = kind;
    v[1] = payload ? payload : "{}";
    v[2] = o->queue;
    v[3] = o->run_at != NULL ? t->run_at : NULL;
    v[4] = t->priority;
    v[5] = o->max_attempts > 0 ? t->max_attempts : NULL;
    v[6] = o->timeout > 0 ? t->timeout : NULL;
    v[7] = o->unique_key;
    v[8] = o->unique_for > 0 ? t->unique_for : NULL;
    v[9] = o->concurrency_key;
}

int
rhino_enqueue(PGconn *conn, const char *kind, const char *payload, const rhino_enqueue_opts *opts,
              int64_t *id, bool *existing, rhino_error *err)
{
    static const char         fn[] = "rhino_enqueue";
    static const rhino_enqueue_opts defaults;
    const rhino_enqueue_opts *o = opts ? opts : &defaults;
    const rhc_stmt_t         *st = rhino_client_sql(RHC_STMT_ENQUEUE);
    const char               *params[10];
    rhc_nums_t                t;
    PGresult                 *res;

    if (rhc_check_conn(conn, fn, err) < 0 || rhc_check_job(fn, "", kind, payload, o, err) < 0)
        return -1;
    rhc_args(kind, payload, o, &t, params);
    res = PQexecParams(conn, st->sql, st->nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        rhc_fail_pg(err, fn, NULL, conn, res);
        PQclear(res);
        return -1;
    }
    if (id != NULL)
        *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    if (existing != NULL)
        *existing = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    PQclear(res);
    return 0;
}

/* ---- many jobs with unique keys: one statement over arrays ---------------- */

static int
rhc_many_unnest(PGconn *conn, const rhino_job_spec *jobs, size_t n, int64_t *ids, bool *existing,
                rhino_error *err)
{
    static const char fn[] = "rhino_enqueue_many";
    const rhc_stmt_t *st = rhino_client_sql(RHC_STMT_ENQUEUE_MANY);
    rhc_buf_t         arr[10];
    const char       *params[10];
    PGresult         *res;
    int               rc = -1;

    memset(arr, 0, sizeof(arr));
    for (int a = 0; a < 10; a++)
        rhc_add(&arr[a], "{", 1);
    for (size_t i = 0; i < n; i++) {
        const char *v[10];
        rhc_nums_t  t;

        rhc_args(jobs[i].kind, jobs[i].payload, &jobs[i].opts, &t, v);
        for (int a = 0; a < 10; a++) {
            if (i > 0)
                rhc_add(&arr[a], ",", 1);
            rhc_add_elem(&arr[a], v[a]);
        }
    }
    for (int a = 0; a < 10; a++) {
        rhc_add(&arr[a], "}", 1);
        if (arr[a].oom) {
            rhc_fail(err, NULL, "%s: out of memory", fn);
            goto out;
        }
        params[a] = arr[a].data;
    }

    res = PQexecParams(conn, st->sql, st->nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || (size_t) PQntuples(res) != n) {
        rhc_fail_pg(err, fn, NULL, conn, res);
        PQclear(res);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (ids != NULL)
            ids[i] = strtoll(PQgetvalue(res, (int) i, 0), NULL, 10);
        if (existing != NULL)
            existing[i] = strcmp(PQgetvalue(res, (int) i, 1), "t") == 0;
    }
    PQclear(res);
    rc = 0;
out:
    for (int a = 0; a < 10; a++)
        free(arr[a].data);
    return rc;
}

/* ---- many jobs without keys: COPY ------------------------------------------ */

/*
 * PQputCopyData / PQflush on a connection the caller may have made
 * non-blocking: wait until the socket takes more.
 */
static int
rhc_wait_writable(PGconn *conn)
{
    struct pollfd pfd = { PQsocket(conn), POLLOUT, 0 };

    return pfd.fd < 0 || poll(&pfd, 1, -1) < 0 ? -1 : 0;
}

static int
rhc_copy_send(PGconn *conn, rhc_buf_t *b)
{
    for (size_t off = 0; off < b->len;) {
        int n = b->len - off < (size_t) INT_MAX ? (int) (b->len - off) : INT_MAX;
        int r = PQputCopyData(conn, b->data + off, n);

        if (r < 0)
            return -1;
        if (r == 0) {
            if (rhc_wait_writable(conn) < 0)
                return -1;
            continue;
        }
        off += (size_t) n;
    }
    b->len = 0;
    return 0;
}

/* The job a failed COPY names: "COPY jobs, line 3, ..." is jobs[2].  -1 if it does not say. */
static long
rhc_copy_error_row(const PGresult *res)
{
    const char *ctx = PQresultErrorField(res, PG_DIAG_CONTEXT);
    const char *copy = ctx ? strstr(ctx, "COPY ") : NULL;
    const char *at = copy ? strstr(copy, ", line ") : NULL;
    long        line = at ? strtol(at + 7, NULL, 10) : 0;

    return line > 0 ? line - 1 : -1;
}

static int
rhc_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * Wake the listeners of every queue that received a job due now: one
 * pg_notify per distinct queue, as rhino.enqueue sends per job (PostgreSQL
 * would fold repeats within a transaction anyway; fewer is cheaper).
 */
static int
rhc_copy_notify(PGconn *conn, const rhino_job_spec *jobs, size_t n, double now, rhino_error *err)
{
    static const char fn[] = "rhino_enqueue_many";
    const rhc_stmt_t *st = rhino_client_sql(RHC_STMT_NOTIFY);
    const char      **q = malloc(n * sizeof(*q));
    const char       *params[1];
    size_t            nq = 0;
    rhc_buf_t         arr = { 0 };
    PGresult         *res;
    int               rc = -1;

    if (q == NULL) {
        rhc_fail(err, NULL, "%s: out of memory", fn);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (jobs[i].opts.run_at == NULL || *jobs[i].opts.run_at <= now)
            q[nq++] = jobs[i].opts.queue ? jobs[i].opts.queue : RHC_DEFAULT_QUEUE;
    if (nq == 0) {
        free(q);
        return 0;
    }
    qsort(q, nq, sizeof(*q), rhc_cmp_str);
    rhc_add(&arr, "{", 1);
    for (size_t i = 0; i < nq; i++) {
        if (i > 0 && strcmp(q[i], q[i - 1]) == 0)
            continue;
        if (arr.len > 1)
            rhc_add(&arr, ",", 1);
        rhc_add_elem(&arr, q[i]);
    }
    rhc_add(&arr, "}", 1);
    if (arr.oom) {
        rhc_fail(err, NULL, "%s: out of memory", fn);
        goto out;
    }
    params[0] = arr.data;
    res = PQexecParams(conn, st->sql, st->nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rhc_fail_pg(err, fn, NULL, conn, res);
        PQclear(res);
        goto out;
    }
    PQclear(res);
    rc = 0;
out:
    free(arr.data);
    free(q);
    return rc;
}

/*
 * The COPY path.  Rows carry an id only if the caller wants the ids (then
 * taken from the jobs' identity sequence first), and run_at and state only
 * if some job has a run_at (then 'scheduled' where it is later than the
 * server's clock, read in the same round trip).
 */
static int
rhc_many_copy(PGconn *conn, const rhino_job_spec *jobs, size_t n, int64_t *ids, bool *existing,
              rhino_error *err)
{
    static const char fn[] = "rhino_enqueue_many";
    int               want_ids = ids != NULL, any_run_at = 0, in_copy = 0, rc = -1;
    int               autocommit = PQtransactionStatus(conn) == PQTRANS_IDLE;
    double            now = 0;
    char              nbuf[24], now_text[RHC_TS_LEN];
    rhc_buf_t         b = { 0 };
    rhc_stmt_id_t     copy;
    PGresult         *res;

    for (size_t i = 0; i < n; i++)
        any_run_at |= jobs[i].opts.run_at != NULL;
    if (want_ids || any_run_at) {
        const rhc_stmt_t *st = rhino_client_sql(RHC_STMT_PREPARE_COPY);
        const char       *params[1] = { nbuf };

        snprintf(nbuf, sizeof(nbuf), "%zu", want_ids ? n : (size_t) 0);
        res = PQexecParams(conn, st->sql, st->nparams, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1 ||
            (want_ids && (size_t) PQntuples(res) != n)) {
            rhc_fail_pg(err, fn, NULL, conn, res);
            PQclear(res);
            return -1;
        }
        now = strtod(PQgetvalue(res, 0, 0), NULL);
        rhc_fmt_time(now_text, sizeof(now_text), now);
        for (size_t i = 0; want_ids && i < n; i++)
            ids[i] = strtoll(PQgetvalue(res, (int) i, 1), NULL, 10);
        PQclear(res);
    }

    copy = want_ids ? (any_run_at ? RHC_STMT_COPY_ID_RUN_AT : RHC_STMT_COPY_ID)
                    : (any_run_at ? RHC_STMT_COPY_RUN_AT : RHC_STMT_COPY);
    res = PQexec(conn, rhino_client_sql(copy)->sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        rhc_fail_pg(err, fn, NULL, conn, res);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    in_copy = 1;

    for (size_t i = 0; i < n; i++) {
        const rhino_enqueue_opts *o = &jobs[i].opts;
        char                      num[64];

        if (want_ids) {
            snprintf(num, sizeof(num), "%lld\t", (long long) ids[i]);
            rhc_adds(&b, num);
        }
        rhc_add_copy(&b, jobs[i].kind);
        rhc_add(&b, "\t", 1);
        rhc_add_copy(&b, o->queue ? o->queue : RHC_DEFAULT_QUEUE);
        rhc_add(&b, "\t", 1);
        rhc_add_copy(&b, jobs[i].payload ? jobs[i].payload : "{}");
        snprintf(num, sizeof(num), "\t%d\t%d\t", o->priority,
                 o->max_attempts > 0 ? o->max_attempts : RHC_DEFAULT_MAX_ATTEMPTS);
        rhc_adds(&b, num);
        if (o->timeout > 0) {
            snprintf(num, sizeof(num), "%.17g", o->timeout);
            rhc_adds(&b, num);
        } else {
            rhc_adds(&b, "\\N");
        }
        rhc_add(&b, "\t", 1);
        if (o->concurrency_key != NULL)
            rhc_add_copy(&b, o->concurrency_key);
        else
            rhc_adds(&b, "\\N");
        if (any_run_at) {
            if (o->run_at != NULL) {
                char ts[RHC_TS_LEN];

                rhc_fmt_time(ts, sizeof(ts), *o->run_at);
                rhc_add(&b, "\t", 1);
                rhc_adds(&b, ts);
                rhc_adds(&b, *o->run_at > now ? "\tscheduled" : "\tavailable");
            } else {
                rhc_add(&b, "\t", 1);
                rhc_adds(&b, now_text);
                rhc_adds(&b, "\tavailable");
            }
        }
        rhc_add(&b, "\n", 1);
        if (b.oom) {
            rhc_fail(err, NULL, "%s: out of memory", fn);
            goto out;
        }
        if (b.len >= RHC_COPY_CHUNK && rhc_copy_send(conn, &b) < 0) {
            rhc_fail(err, NULL, "%s: sending the COPY data failed: %s", fn, PQerrorMessage(conn));
            goto out;
        }
    }
    if (rhc_copy_send(conn, &b) < 0) {
        rhc_fail(err, NULL, "%s: sending the COPY data failed: %s", fn, PQerrorMessage(conn));
        goto out;
    }
    for (int r; (r = PQputCopyEnd(conn, NULL)) != 1;)
        if (r < 0 || rhc_wait_writable(conn) < 0) {
            rhc_fail(err, NULL, "%s: ending the COPY failed: %s", fn, PQerrorMessage(conn));
            goto out;
        }
    in_copy = 0;
    for (int r; (r = PQflush(conn)) != 0;)
        if (r < 0 || rhc_wait_writable(conn) < 0) {
            rhc_fail(err, NULL, "%s: ending the COPY failed: %s", fn, PQerrorMessage(conn));
            goto out;
        }

    res = PQgetResult(conn);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        long row = rhc_copy_error_row(res);
        char who[48] = "";

        if (row >= 0 && (size_t) row < n)
            snprintf(who, sizeof(who), "jobs[%ld]: ", row);
        rhc_fail_pg(err, fn, who, conn, res);
    } else {
        rc = 0;
    }
    PQclear(res);
    while ((res = PQgetResult(conn)) != NULL)
        PQclear(res);
    if (rc < 0)
        goto out;

    /*
     * In a transaction a failed wake-up has aborted it: nothing was
     * enqueued.  In autocommit mode the COPY has committed: the jobs exist,
     * and a failed wake-up only delays them to the daemons' next poll;
     * reporting failure would make the caller enqueue them twice (*err
     * keeps the reason all the same).
     */
    if (rhc_copy_notify(conn, jobs, n, now, err) < 0 && !autocommit)
        rc = -1;
    if (rc == 0 && existing != NULL)
        memset(existing, 0, n * sizeof(*existing));
out:
    if (in_copy) {
        PQputCopyEnd(conn, "librhino gave up");     /* the server discards the COPY */
        while ((res = PQgetResult(conn)) != NULL)
            PQclear(res);
    }
    free(b.data);
    return rc;
}

int
rhino_enqueue_many(PGconn *conn, const rhino_job_spec *jobs, size_t n, int64_t *ids, bool *existing,
                   rhino_error *err)
{
    static const char fn[] = "rhino_enqueue_many";
    int               any_key = 0;

    if (n == 0)
        return 0;
    if (jobs == NULL) {
        rhc_fail(err, NULL, "%s: jobs is NULL", fn);
        return -1;
    }
    if (n > (size_t) INT_MAX) {
        /* result rows are counted in int */
        rhc_fail(err, NULL, "%s: more than %d jobs in one call; split them", fn, INT_MAX);
        return -1;
    }
    if (rhc_check_conn(conn, fn, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char who[48];

        snprintf(who, sizeof(who), "jobs[%zu]: ", i);
        if (rhc_check_job(fn, who, jobs[i].kind, jobs[i].payload, &jobs[i].opts, err) < 0)
            return -1;
        any_key |= jobs[i].opts.unique_key != NULL;
    }
    return any_key ? rhc_many_unnest(conn, jobs, n, ids, existing, err)
                   : rhc_many_copy(conn, jobs, n, ids, existing, err);
}
