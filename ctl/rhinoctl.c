/* rhinoctl.c - the admin CLI: migrate the schema, enqueue jobs (one or in bulk), show queue stats. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "rh_config.h"
#include "rh_db.h"
#include "rh_migrate.h"
#include "rh_sql.h"

#define CTL_EXIT_OK     0
#define CTL_EXIT_ERROR  1       /* the database or the input said no */
#define CTL_EXIT_USAGE  2       /* the command line is wrong */

/* COPY data goes out in chunks of this size: one CopyData message per chunk, not per job. */
#define CTL_COPY_CHUNK  (256 * 1024)

/*
 * What --bulk writes for options that were not given.  They mirror the
 * column defaults of rhino.jobs (sql/001_init.sql): COPY with an explicit
 * column list does not fall back to the defaults.
 */
#define CTL_DEFAULT_QUEUE        "default"
#define CTL_DEFAULT_PRIORITY     "0"
#define CTL_DEFAULT_MAX_ATTEMPTS "25"

typedef enum {
    CTL_OPT_QUEUE = 256,
    CTL_OPT_RUN_AT,
    CTL_OPT_PRIORITY,
    CTL_OPT_MAX_ATTEMPTS,
    CTL_OPT_BULK,
    CTL_OPT_JSON
} ctl_opt_t;

typedef struct {
    const char *config_file;
    /* enqueue; NULL = not given, so that the SQL's defaults apply */
    const char *queue;
    const char *run_at;
    const char *priority;
    const char *max_attempts;
    int         bulk;
    /* stats */
    int         json;
} ctl_opts_t;

static const struct option ctl_long_options[] = {
    { "config",       required_argument, NULL, 'c' },
    { "help",         no_argument,       NULL, 'h' },
    { "version",      no_argument,       NULL, 'V' },
    { "queue",        required_argument, NULL, CTL_OPT_QUEUE },
    { "run-at",       required_argument, NULL, CTL_OPT_RUN_AT },
    { "priority",     required_argument, NULL, CTL_OPT_PRIORITY },
    { "max-attempts", required_argument, NULL, CTL_OPT_MAX_ATTEMPTS },
    { "bulk",         no_argument,       NULL, CTL_OPT_BULK },
    { "json",         no_argument,       NULL, CTL_OPT_JSON },
    { NULL, 0, NULL, 0 }
};

static void
ctl_usage(FILE *f)
{
    fputs("Usage: rhinoctl [-c FILE] COMMAND [ARGS] [OPTIONS]\n"
          "\n"
          "Commands:\n"
          "  migrate                create or upgrade the Rhino schema\n"
          "  enqueue KIND [JSON]    add one job (payload JSON, default {}); prints its id\n"
          "  enqueue --bulk KIND    add one job per line of stdin, each line a JSON payload\n"
          "  stats [--json]         count jobs per queue and state\n"
          "\n"
          "Enqueue options:\n"
          "  --queue Q              queue name (default: default)\n"
          "  --run-at T             run at timestamp T ('2030-01-01 12:00+00') or after an\n"
          "                         interval from now ('+10 min'); default: now\n"
          "  --priority P           -32768..32767, lower runs first (default: 0)\n"
          "  --max-attempts N       attempts before the job is discarded, at least 1 (default: 25)\n"
          "  --bulk                 read the payloads from stdin (blank lines are skipped)\n"
          "\n"
          "General options:\n"
          "  -c, --config FILE      take [database] dsn from this rhino.ini\n"
          "  -h, --help             show this help\n"
          "  -V, --version          show the version\n"
          "\n"
          "The database: RHINO_DSN if set, else [database] dsn of -c FILE, else libpq's\n"
          "defaults (PGHOST, PGDATABASE, ... and ~/.pgpass).\n", f);
}

static void
ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
ctl_err(const char *fmt, ...)
{
    va_list ap;

    fputs("rhinoctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* A usage error: the message, then the usage, on stderr. */
static int
ctl_usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
ctl_usage_err(const char *fmt, ...)
{
    va_list ap;

    fputs("rhinoctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n\n", stderr);
    ctl_usage(stderr);
    return CTL_EXIT_USAGE;
}

/* A bad option value: the message and a pointer to --help; the whole usage would bury it. */
static int
ctl_value_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
ctl_value_err(const char *fmt, ...)
{
    va_list ap;

    fputs("rhinoctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry \"rhinoctl --help\" for more information.\n", stderr);
    return CTL_EXIT_USAGE;
}

/*
 * PostgreSQL's error on one line: rh_db_error's first line, plus the DETAIL
 * when there is one (for bad JSON it names the offending token).
 */
static const char *
ctl_pgmsg(PGconn *conn, const PGresult *res)
{
    static char buf[2048];
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;

    if (detail != NULL && *detail != '\0')
        snprintf(buf, sizeof(buf), "%s (%s)", rh_db_error(conn, res), detail);
    else
        snprintf(buf, sizeof(buf), "%s", rh_db_error(conn, res));
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return buf;
}

/* Characters, not bytes, as PostgreSQL's length() counts them (the database is UTF-8). */
static size_t
ctl_utf8_len(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        if (((unsigned char) *s & 0xC0) != 0x80)
            n++;
    return n;
}

/* A whole decimal number in [min, max], nothing else; -1 if not. */
static int
ctl_parse_long(const char *s, long min, long max)
{
    char *end;
    long  v;

    if (*s == '\0' || isspace((unsigned char) *s))
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    return 0;
}

static int
ctl_check_name(const char *what, const char *s)
{
    size_t n = ctl_utf8_len(s);

    if (n == 0 || n > 255)
        return ctl_value_err("%s: must be 1 to 255 characters long", what);
    return 0;
}

/*
 * The connection: -c FILE's [database] dsn or the defaults; RHINO_DSN
 * overrides either (rh_config_* apply it).  Errors never show the DSN,
 * which may hold a password.
 */
static PGconn *
ctl_connect(const ctl_opts_t *o)
{
    rh_config_t cfg;
    char        err[1024];
    PGconn     *conn;

    if (o->config_file != NULL) {
        if (rh_config_load(o->config_file, &cfg, err, sizeof(err)) < 0) {
            ctl_err("%s", err);
            rh_config_free(&cfg);
            return NULL;
        }
    } else {
        rh_config_defaults(&cfg);
    }
    conn = rh_db_connect(cfg.dsn, "ctl", err, sizeof(err));
    rh_config_free(&cfg);
    if (conn == NULL)
        ctl_err("%s", err);
    return conn;
}

/* Schema version as recorded in rhino.schema_migrations; -1 on error (reported). */
static int
ctl_schema_version(PGconn *conn, const char *what)
{
    PGresult *res;
    int       v;

    res = PQexecParams(conn, rh_sql(RH_STMT_SCHEMA_VERSION)->sql, 0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ctl_err("%s: cannot read the schema version: %s", what, ctl_pgmsg(conn, res));
        PQclear(res);
        return -1;
    }
    v = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static int
ctl_migrate(PGconn *conn)
{
    char err[2048];
    int  applied, version;

    if (rh_migrate(conn, &applied, err, sizeof(err)) < 0) {
        ctl_err("migrate: %s", err);
        return CTL_EXIT_ERROR;
    }
    version = ctl_schema_version(conn, "migrate");
    if (version < 0)
        return CTL_EXIT_ERROR;
    if (applied > 0)
        printf("migrated: %d step(s) applied, schema at version %d\n", applied, version);
    else
        printf("schema already at version %d\n", version);
    /* not an error: the schema this rhinoctl needs is there; but an old binary is worth knowing about */
    if (version > RH_SCHEMA_VERSION)
        ctl_err("migrate: warning: the schema is at version %d, newer than this rhinoctl knows (%d)",
                version, RH_SCHEMA_VERSION);
    return CTL_EXIT_OK;
}

/* Enqueue, stats: refuse with "run rhinoctl migrate" rather than "relation does not exist". */
static int
ctl_require_schema(PGconn *conn, const char *what)
{
    char err[1024];

    if (rh_db_check_schema(conn, err, sizeof(err)) < 0) {
        ctl_err("%s: %s", what, err);
        return -1;
    }
    return 0;
}

/*
 * Resolve --run-at on the server: "+INTERVAL" or a timestamp, NULL for now.
 * Fills ts (ISO 8601 UTC) and *future.  -1 on error (reported).
 */
static int
ctl_resolve_run_at(PGconn *conn, const char *what, const char *spec, char *ts, size_t tslen, int *future)
{
    const char *params[2] = { NULL, NULL };
    PGresult   *res;

    if (spec != NULL && spec[0] == '+')
        params[1] = spec + 1;
    else
        params[0] = spec;
    res = PQexecParams(conn, rh_sql(RH_STMT_CTL_RUN_AT)->sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ctl_err("%s: --run-at: %s", what, ctl_pgmsg(conn, res));
        PQclear(res);
        return -1;
    }
    snprintf(ts, tslen, "%s", PQgetvalue(res, 0, 0));
    *future = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    PQclear(res);
    return 0;
}

static int
ctl_enqueue_one(PGconn *conn, const ctl_opts_t *o, const char *kind, const char *json)
{
    const char *params[6];
    char        ts[64];
    int         future;
    PGresult   *res;

    params[0] = kind;
    params[1] = json ? json : "{}";
    params[2] = o->queue;
    params[3] = o->run_at;
    params[4] = o->priority;
    params[5] = o->max_attempts;
    /* an interval needs the server's now(); an absolute time goes straight in */
    if (o->run_at != NULL && o->run_at[0] == '+') {
        if (ctl_resolve_run_at(conn, "enqueue", o->run_at, ts, sizeof(ts), &future) < 0)
            return CTL_EXIT_ERROR;
        params[3] = ts;
    }
    res = PQexecParams(conn, rh_sql(RH_STMT_ENQUEUE)->sql, rh_sql(RH_STMT_ENQUEUE)->nparams,
                       NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        ctl_err("enqueue: %s", ctl_pgmsg(conn, res));
        PQclear(res);
        return CTL_EXIT_ERROR;
    }
    printf("%s\n", PQgetvalue(res, 0, 0));
    PQclear(res);
    return CTL_EXIT_OK;
}

/* A growable byte buffer for COPY data. */
typedef struct {
    char   *data;
    size_t  len;
    size_t  cap;
} ctl_buf_t;

static int
ctl_buf_reserve(ctl_buf_t *b, size_t more)
{
    size_t cap = b->cap ? b->cap : CTL_COPY_CHUNK + 4096;
    char  *p;

    if (b->len + more <= b->cap)
        return 0;
    while (cap < b->len + more)
        cap *= 2;
    p = realloc(b->data, cap);
    if (p == NULL)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

/*
 * Append s[0..n) escaped for COPY's text format: backslash, tab, newline
 * and carriage return would otherwise end a field or a row (or start an
 * escape).  The worst case doubles the size.
 */
static int
ctl_buf_copy_escaped(ctl_buf_t *b, const char *s, size_t n)
{
    char *o;

    if (ctl_buf_reserve(b, 2 * n) < 0)
        return -1;
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
    return 0;
}

static int
ctl_buf_add(ctl_buf_t *b, const char *s, size_t n)
{
    if (ctl_buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

/*
 * Send the buffered rows.  COPY data need not end on a row boundary, so a
 * buffer grown past INT_MAX by one huge line goes out in pieces.
 */
static int
ctl_copy_send(PGconn *conn, ctl_buf_t *b)
{
    for (size_t off = 0; off < b->len;) {
        size_t n = b->len - off < (size_t) INT_MAX ? b->len - off : (size_t) INT_MAX;

        if (PQputCopyData(conn, b->data + off, (int) n) != 1) {
            ctl_err("enqueue --bulk: sending the data failed: %s", rh_db_error(conn, NULL));
            return -1;
        }
        off += n;
    }
    b->len = 0;
    return 0;
}

/*
 * Input lines skipped as blank, in order, so that COPY's row number can be
 * turned back into the line number of the user's file.
 */
typedef struct {
    long   *lines;
    size_t  n;
    size_t  cap;
} ctl_skips_t;

static int
ctl_skips_add(ctl_skips_t *s, long line)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        long  *p = realloc(s->lines, cap * sizeof(long));
        if (p == NULL)
            return -1;
        s->lines = p;
        s->cap = cap;
    }
    s->lines[s->n++] = line;
    return 0;
}

static long
ctl_skips_input_line(const ctl_skips_t *s, long row)
{
    long line = row;

    /* each blank line at or before the current guess pushes the row one line further down */
    for (size_t i = 0; i < s->n && s->lines[i] <= line; i++)
        line++;
    return line;
}

/*
 * The failed COPY's message, naming the input line.  PostgreSQL's context
 * reads "COPY jobs, line 3, column payload: ..."; its line counts COPY rows,
 * which differ from input lines when blank lines were skipped.
 */
static void
ctl_report_copy_error(PGconn *conn, const PGresult *res, const ctl_skips_t *skips)
{
    const char *ctx = PQresultErrorField(res, PG_DIAG_CONTEXT);
    const char *copy = ctx ? strstr(ctx, "COPY ") : NULL;
    const char *at = copy ? strstr(copy, ", line ") : NULL;
    long        row = at ? strtol(at + 7, NULL, 10) : 0;

    if (row > 0) {
        ctl_err("enqueue --bulk: input line %ld: %s", ctl_skips_input_line(skips, row),
                ctl_pgmsg(conn, res));
    } else if (ctx != NULL) {
        /* a translated context ("Zeile 3"): show it as it is */
        char c[512];
        snprintf(c, sizeof(c), "%s", ctx);
        c[strcspn(c, "\n")] = '\0';
        ctl_err("enqueue --bulk: %s (%s)", ctl_pgmsg(conn, res), c);
    } else {
        ctl_err("enqueue --bulk: %s", ctl_pgmsg(conn, res));
    }
}

static int
ctl_is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char) s[i]))
            return 0;
    return 1;
}

/*
 * enqueue --bulk: one COPY for all of stdin, so that it is one statement,
 * all or nothing, and fast.  Every row shares kind, queue, priority,
 * max_attempts, run_at and state, resolved once before the COPY; only the
 * payload varies.
 */
static int
ctl_enqueue_bulk(PGconn *conn, const ctl_opts_t *o, const char *kind)
{
    ctl_buf_t   row_head = { 0 }, row_tail = { 0 }, buf = { 0 };
    ctl_skips_t skips = { 0 };
    char        ts[64], *line = NULL;
    size_t      linecap = 0;
    ssize_t     n;
    long        lineno = 0;
    int         future, rc = CTL_EXIT_ERROR, in_copy = 0;
    PGresult   *res;

    if (ctl_resolve_run_at(conn, "enqueue --bulk", o->run_at, ts, sizeof(ts), &future) < 0)
        return CTL_EXIT_ERROR;

    /* "kind\tqueue\t" PAYLOAD "\tpriority\tmax_attempts\trun_at\tstate\n" */
    if (ctl_buf_copy_escaped(&row_head, kind, strlen(kind)) < 0 ||
        ctl_buf_add(&row_head, "\t", 1) < 0 ||
        ctl_buf_copy_escaped(&row_head, o->queue ? o->queue : CTL_DEFAULT_QUEUE,
                             strlen(o->queue ? o->queue : CTL_DEFAULT_QUEUE)) < 0 ||
        ctl_buf_add(&row_head, "\t", 1) < 0)
        goto oom;
    {
        char tail[160];
        int  tn = snprintf(tail, sizeof(tail), "\t%s\t%s\t%s\t%s\n",
                           o->priority ? o->priority : CTL_DEFAULT_PRIORITY,
                           o->max_attempts ? o->max_attempts : CTL_DEFAULT_MAX_ATTEMPTS,
                           ts, future ? "scheduled" : "available");
        if (tn < 0 || (size_t) tn >= sizeof(tail) || ctl_buf_add(&row_tail, tail, (size_t) tn) < 0)
            goto oom;
    }

    res = PQexec(conn, rh_sql(RH_STMT_CTL_COPY)->sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        ctl_err("enqueue --bulk: %s", ctl_pgmsg(conn, res));
        PQclear(res);
        goto out;
    }
    PQclear(res);
    in_copy = 1;

    while ((n = getline(&line, &linecap, stdin)) >= 0) {
        size_t len = (size_t) n;
        char  *p = line;

        lineno++;
        if (len > 0 && p[len - 1] == '\n')
            len--;
        if (len > 0 && p[len - 1] == '\r')
            len--;                              /* CRLF files */
        if (lineno == 1 && len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
            p += 3;                             /* a UTF-8 byte order mark */
            len -= 3;
        }
        if (ctl_is_blank(p, len)) {
            if (ctl_skips_add(&skips, lineno) < 0)
                goto oom;
            continue;
        }
        if (ctl_buf_add(&buf, row_head.data, row_head.len) < 0 ||
            ctl_buf_copy_escaped(&buf, p, len) < 0 ||
            ctl_buf_add(&buf, row_tail.data, row_tail.len) < 0)
            goto oom;
        if (buf.len >= CTL_COPY_CHUNK && ctl_copy_send(conn, &buf) < 0)
            goto out;
    }
    if (ferror(stdin)) {
        /* abort the COPY: a half-read input must not become half the jobs */
        ctl_err("enqueue --bulk: cannot read stdin after line %ld: %s", lineno, strerror(errno));
        PQputCopyEnd(conn, "rhinoctl could not read its input");
        in_copy = 0;
        PQclear(PQgetResult(conn));
        goto out;
    }
    if (ctl_copy_send(conn, &buf) < 0)
        goto out;
    if (PQputCopyEnd(conn, NULL) != 1) {
        ctl_err("enqueue --bulk: ending the COPY failed: %s", rh_db_error(conn, NULL));
        goto out;
    }
    in_copy = 0;

    res = PQgetResult(conn);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        ctl_report_copy_error(conn, res, &skips);
        PQclear(res);
    } else {
        printf("enqueued %s jobs\n", PQcmdTuples(res));
        PQclear(res);
        rc = CTL_EXIT_OK;
    }
    /* drain to the end of the command */
    while ((res = PQgetResult(conn)) != NULL)
        PQclear(res);
    goto out;

oom:
    ctl_err("enqueue --bulk: out of memory");
out:
    if (in_copy) {
        /* the server rolls the COPY back; the process exits right after */
        PQputCopyEnd(conn, "rhinoctl gave up");
    }
    free(line);
    free(buf.data);
    free(row_head.data);
    free(row_tail.data);
    free(skips.lines);
    return rc;
}

/* s as a JSON string literal. */
static void
ctl_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char) *s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* One line of the stats table; printf pads bytes, queue names may be wider in bytes than on screen. */
static void
ctl_stats_row(int wq, const char *queue, int ws, const char *state, int wc, const char *count)
{
    fputs(queue, stdout);
    printf("%*s  %-*s  %*s\n", wq - (int) ctl_utf8_len(queue), "", ws, state, wc, count);
}

static int
ctl_stats(PGconn *conn, const ctl_opts_t *o)
{
    PGresult *res;
    int       rows, wq = 5, ws, wc = 5;
    int64_t   total = 0;
    char      tbuf[32];

    res = PQexecParams(conn, rh_sql(RH_STMT_STATS)->sql, 0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ctl_err("stats: %s", ctl_pgmsg(conn, res));
        PQclear(res);
        return CTL_EXIT_ERROR;
    }
    rows = PQntuples(res);

    if (o->json) {
        for (int i = 0; i < rows; i++) {
            fputs("{\"queue\":", stdout);
            ctl_json_string(stdout, PQgetvalue(res, i, 0));
            fputs(",\"state\":", stdout);
            ctl_json_string(stdout, PQgetvalue(res, i, 1));
            printf(",\"count\":%s}\n", PQgetvalue(res, i, 2));
        }
        PQclear(res);
        return CTL_EXIT_OK;
    }

    for (int i = 0; i < rows; i++) {
        int lq = (int) ctl_utf8_len(PQgetvalue(res, i, 0));
        wq = lq > wq ? lq : wq;
        total += strtoll(PQgetvalue(res, i, 2), NULL, 10);
    }
    ws = (int) strlen("available");     /* the longest state name */
    snprintf(tbuf, sizeof(tbuf), "%" PRId64, total);
    wc = (int) strlen(tbuf) > wc ? (int) strlen(tbuf) : wc;

    ctl_stats_row(wq, "QUEUE", ws, "STATE", wc, "COUNT");
    for (int i = 0; i < rows; i++)
        ctl_stats_row(wq, PQgetvalue(res, i, 0), ws, PQgetvalue(res, i, 1), wc, PQgetvalue(res, i, 2));
    ctl_stats_row(wq, "total", ws, "", wc, tbuf);
    PQclear(res);
    return CTL_EXIT_OK;
}

int
main(int argc, char **argv)
{
    ctl_opts_t  o = { 0 };
    const char *cmd, *kind = NULL, *json = NULL;
    int         c, nargs, rc, enqueue_opts = 0;
    PGconn     *conn;

    opterr = 1;     /* getopt's own "unrecognized option" line, then our usage */
    while ((c = getopt_long(argc, argv, "c:hV", ctl_long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            o.config_file = optarg;
            break;
        case 'h':
            ctl_usage(stdout);
            return CTL_EXIT_OK;
        case 'V':
            printf("rhinoctl %s\n", PACKAGE_VERSION);
            return CTL_EXIT_OK;
        case CTL_OPT_QUEUE:
            o.queue = optarg;
            enqueue_opts = 1;
            break;
        case CTL_OPT_RUN_AT:
            o.run_at = optarg;
            enqueue_opts = 1;
            break;
        case CTL_OPT_PRIORITY:
            if (ctl_parse_long(optarg, -32768, 32767) < 0)
                return ctl_value_err("--priority: \"%s\" is not a whole number from -32768 to 32767", optarg);
            o.priority = optarg;
            enqueue_opts = 1;
            break;
        case CTL_OPT_MAX_ATTEMPTS:
            if (ctl_parse_long(optarg, 1, INT_MAX) < 0)
                return ctl_value_err("--max-attempts: \"%s\" is not a whole number from 1 to %d",
                                     optarg, INT_MAX);
            o.max_attempts = optarg;
            enqueue_opts = 1;
            break;
        case CTL_OPT_BULK:
            o.bulk = 1;
            enqueue_opts = 1;
            break;
        case CTL_OPT_JSON:
            o.json = 1;
            break;
        default:
            fputc('\n', stderr);
            ctl_usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }

    if (optind >= argc)
        return ctl_usage_err("no command given");
    cmd = argv[optind];
    nargs = argc - optind - 1;

    if (strcmp(cmd, "migrate") == 0 || strcmp(cmd, "stats") == 0) {
        if (nargs > 0)
            return ctl_usage_err("%s: unexpected argument \"%s\"", cmd, argv[optind + 1]);
        if (enqueue_opts)
            return ctl_usage_err("%s: --queue, --run-at, --priority, --max-attempts and --bulk "
                                 "belong to enqueue", cmd);
        if (o.json && strcmp(cmd, "stats") != 0)
            return ctl_usage_err("%s: --json belongs to stats", cmd);
    } else if (strcmp(cmd, "enqueue") == 0) {
        if (o.json)
            return ctl_usage_err("enqueue: --json belongs to stats");
        if (nargs < 1)
            return ctl_usage_err("enqueue: the job's KIND is missing");
        if (nargs > (o.bulk ? 1 : 2))
            return ctl_usage_err("enqueue: unexpected argument \"%s\"%s", argv[optind + (o.bulk ? 2 : 3)],
                                 o.bulk ? " (with --bulk the payloads come from stdin)" : "");
        kind = argv[optind + 1];
        json = nargs == 2 ? argv[optind + 2] : NULL;
        if (ctl_check_name("enqueue: KIND", kind) != 0 ||
            (o.queue != NULL && ctl_check_name("--queue", o.queue) != 0))
            return CTL_EXIT_USAGE;
    } else {
        return ctl_usage_err("unknown command \"%s\"", cmd);
    }

    conn = ctl_connect(&o);
    if (conn == NULL)
        return CTL_EXIT_ERROR;

    if (strcmp(cmd, "migrate") == 0)
        rc = ctl_migrate(conn);
    else if (ctl_require_schema(conn, cmd) < 0)
        rc = CTL_EXIT_ERROR;
    else if (strcmp(cmd, "stats") == 0)
        rc = ctl_stats(conn, &o);
    else if (o.bulk)
        rc = ctl_enqueue_bulk(conn, &o, kind);
    else
        rc = ctl_enqueue_one(conn, &o, kind, json);
    PQfinish(conn);

    /* a job id lost to a full disk or a closed pipe is a failure */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ctl_err("cannot write to stdout: %s", strerror(errno));
        return CTL_EXIT_ERROR;
    }
    return rc;
}
