/*
 * rhinoctl.c - the admin CLI: migrate the schema, enqueue jobs (one or in
 * bulk), look at jobs and queues (stats, list, show, top) and act on them
 * (retry, cancel, pause, resume, purge).
 *
 * Exit codes and the --json output are an interface: 0 ok; 1 the database
 * failed, or said "not found" or "not allowed"; 2 the command line is
 * wrong.  --json prints one JSON object per line.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "rh_config.h"
#include "rh_db.h"
#include "rh_migrate.h"
#include "rh_cron.h"
#include "rh_schedule.h"
#include "rh_sql.h"

#define CTL_EXIT_OK     0
#define CTL_EXIT_ERROR  1       /* the database or the input said no */
#define CTL_EXIT_USAGE  2       /* the command line is wrong */

/* COPY data goes out in chunks of this size: one CopyData message per chunk, not per job. */
#define CTL_COPY_CHUNK  (256 * 1024)

/* Rows per statement of retry --discarded and purge: short transactions, short locks. */
#define CTL_BATCH       "5000"

#define CTL_LIST_LIMIT  "50"
#define CTL_LIST_MAX    1000000
/*
 * top counts at most this many jobs per queue and state unless --limit says
 * otherwise: a frame a second must cost the same with 10M queued as with
 * 10k (100,000 index entries are about 15 ms of one core).
 */
#define CTL_TOP_LIMIT   100000
#define CTL_TOP_MAX     2000000000

/* How much of last_error a list row shows (characters); show prints all of it. */
#define CTL_ERROR_WIDTH 60

/*
 * What --bulk writes for options that were not given.  They mirror the
 * column defaults of rhino.jobs (sql/001_init.sql): COPY with an explicit
 * column list does not fall back to the defaults.
 */
#define CTL_DEFAULT_QUEUE        "default"
#define CTL_DEFAULT_PRIORITY     "0"
#define CTL_DEFAULT_MAX_ATTEMPTS "25"

/* Type OIDs of the result columns (catalog/pg_type_d.h, which libpq-dev does not ship). */
#define CTL_OID_BOOL    16
#define CTL_OID_INT8    20
#define CTL_OID_INT2    21
#define CTL_OID_INT4    23
#define CTL_OID_JSON    114
#define CTL_OID_FLOAT8  701
#define CTL_OID_JSONB   3802

typedef enum {
    CTL_OPT_QUEUE = 256,
    CTL_OPT_RUN_AT,
    CTL_OPT_PRIORITY,
    CTL_OPT_MAX_ATTEMPTS,
    CTL_OPT_BULK,
    CTL_OPT_JSON,
    CTL_OPT_KIND,
    CTL_OPT_STATE,
    CTL_OPT_LIMIT,
    CTL_OPT_PAYLOAD,
    CTL_OPT_DISCARDED,
    CTL_OPT_FINISHED_BEFORE,
    CTL_OPT_INTERVAL,
    CTL_OPT_ONCE,
    CTL_OPT_UNIQUE_KEY,
    CTL_OPT_UNIQUE_FOR,
    CTL_OPT_CONCURRENCY_KEY,
    CTL_OPT_MISSED,
    /* rhinoctl queue: contiguous, in the order of RH_STMT_CTL_QUEUE_SET's $2..$9 */
    CTL_OPT_MAX_RUNNING,
    CTL_OPT_PER_NODE,
    CTL_OPT_PER_KEY,
    CTL_OPT_RATE,
    CTL_OPT_BURST,
    CTL_OPT_KEY_RATE,
    CTL_OPT_KEY_BURST,
    CTL_OPT_AGING,
    CTL_OPT__END
} ctl_opt_t;

/* One bit per command option, to check the options given against the command's. */
#define CTL_F(opt) (1u << ((opt) - CTL_OPT_QUEUE))
_Static_assert(CTL_OPT__END - CTL_OPT_QUEUE <= 32, "more options than bits in ctl_opts_t.given");

/* rhinoctl queue's settings: CTL_OPT_MAX_RUNNING .. CTL_OPT_AGING */
#define CTL_QSET_N      (CTL_OPT_AGING - CTL_OPT_MAX_RUNNING + 1)
#define CTL_QSET_OPTS   (((1u << CTL_QSET_N) - 1) << (CTL_OPT_MAX_RUNNING - CTL_OPT_QUEUE))

typedef struct {
    const char *config_file;
    unsigned    given;          /* CTL_F bits of the options on the command line */
    /* queue: the new settings as sent ("none" removes one), NULL = keep; aging in seconds */
    const char *qset[CTL_QSET_N];
    char        aging_s[32];
    /* enqueue; NULL = not given, so that the SQL's defaults apply */
    const char *queue;
    const char *run_at;
    const char *priority;
    const char *max_attempts;
    int         bulk;
    const char *unique_key;
    const char *unique_for;
    const char *concurrency_key;
    /* stats, list, show */
    int         json;
    /* list, retry --discarded */
    const char *kind;
    const char *state;
    const char *limit;
    int         payload;
    int         discarded;
    /* purge */
    const char *finished_before;
    /* top */
    double      interval;
    int         once;
    long        top_limit;      /* --limit of top, as a number; 0 = count all */
    /* schedule: --payload=JSON (list's --payload takes no value), --missed */
    const char *payload_json;
    const char *missed;
} ctl_opts_t;

static const struct option ctl_long_options[] = {
    { "config",          required_argument, NULL, 'c' },
    { "help",            no_argument,       NULL, 'h' },
    { "version",         no_argument,       NULL, 'V' },
    { "queue",           required_argument, NULL, CTL_OPT_QUEUE },
    { "run-at",          required_argument, NULL, CTL_OPT_RUN_AT },
    { "priority",        required_argument, NULL, CTL_OPT_PRIORITY },
    { "max-attempts",    required_argument, NULL, CTL_OPT_MAX_ATTEMPTS },
    { "bulk",            no_argument,       NULL, CTL_OPT_BULK },
    { "json",            no_argument,       NULL, CTL_OPT_JSON },
    { "kind",            required_argument, NULL, CTL_OPT_KIND },
    { "state",           required_argument, NULL, CTL_OPT_STATE },
    { "limit",           required_argument, NULL, CTL_OPT_LIMIT },
    { "payload",         optional_argument, NULL, CTL_OPT_PAYLOAD },
    { "discarded",       no_argument,       NULL, CTL_OPT_DISCARDED },
    { "finished-before", required_argument, NULL, CTL_OPT_FINISHED_BEFORE },
    { "interval",        required_argument, NULL, CTL_OPT_INTERVAL },
    { "once",            no_argument,       NULL, CTL_OPT_ONCE },
    { "unique-key",      required_argument, NULL, CTL_OPT_UNIQUE_KEY },
    { "unique-for",      required_argument, NULL, CTL_OPT_UNIQUE_FOR },
    { "concurrency-key", required_argument, NULL, CTL_OPT_CONCURRENCY_KEY },
    { "missed",          required_argument, NULL, CTL_OPT_MISSED },
    { "max-running",     required_argument, NULL, CTL_OPT_MAX_RUNNING },
    { "per-node",        required_argument, NULL, CTL_OPT_PER_NODE },
    { "per-key",         required_argument, NULL, CTL_OPT_PER_KEY },
    { "rate",            required_argument, NULL, CTL_OPT_RATE },
    { "burst",           required_argument, NULL, CTL_OPT_BURST },
    { "key-rate",        required_argument, NULL, CTL_OPT_KEY_RATE },
    { "key-burst",       required_argument, NULL, CTL_OPT_KEY_BURST },
    { "aging",           required_argument, NULL, CTL_OPT_AGING },
    { NULL, 0, NULL, 0 }
};

/* The job states, as rhino.job_state spells them (sql/001_init.sql). */
static const char *const ctl_states[] = {
    "available", "scheduled", "running", "retryable", "completed", "discarded", "cancelled", NULL
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
          "  stats [--json]         count jobs per queue and state; paused queues\n"
          "  list [--queue Q] [--kind K] [--state S] [--limit N] [--payload] [--json]\n"
          "                         jobs, newest first (default: 50)\n"
          "  show ID [--json]       every column of one job, payload included\n"
          "  retry ID               run a discarded or cancelled job again\n"
          "  retry --discarded [--queue Q] [--kind K]\n"
          "                         run all discarded jobs (of Q, of K) again\n"
          "  cancel ID              cancel a job (a running one is asked to stop)\n"
          "  pause QUEUE            stop claiming QUEUE's jobs (running ones finish)\n"
          "  resume QUEUE           claim them again\n"
          "  purge --finished-before T\n"
          "                         delete finished jobs from the history\n"
          "  top [--interval S] [--once] [--limit N]\n"
          "                         live view of queues and workers; q or Ctrl-C quits\n"
          "  schedule NAME CRON KIND [--payload JSON] [--queue Q] [--priority P]\n"
          "           [--max-attempts N] [--missed latest|all|none]\n"
          "                         create or change a periodic job (CRON in UTC)\n"
          "  schedules [--json]     the schedules, their next and last fire times\n"
          "  unschedule NAME        remove a schedule (the jobs it enqueued stay)\n"
          "  queue QUEUE [LIMITS] [--json]\n"
          "                         set or show a queue's limits and priority aging\n"
          "\n"
          "Enqueue options:\n"
          "  --queue Q              queue name (default: default)\n"
          "  --run-at T             run at timestamp T ('2030-01-01 12:00+00') or after an\n"
          "                         interval from now ('+10 min'); default: now\n"
          "  --priority P           -32768..32767, lower runs first (default: 0)\n"
          "  --max-attempts N       attempts before the job is discarded, at least 1 (default: 25)\n"
          "  --bulk                 read the payloads from stdin (blank lines are skipped)\n"
          "  --unique-key K         no second live job with key K: print the live one's id\n"
          "                         and \"existing\" instead (not with --bulk)\n"
          "  --unique-for D         with --unique-key: at most one job with key K per period D\n"
          "                         ('90 s', '1 minute', '2 hours'), finished or not\n"
          "  --concurrency-key K    the job's key for per-key concurrency limits\n"
          "\n"
          "Other options:\n"
          "  --json                 one JSON object per line (stats, list, show; enqueue:\n"
          "                         {\"id\":N,\"existing\":false})\n"
          "  --state S              available, scheduled, running, retryable, completed,\n"
          "                         discarded or cancelled (list)\n"
          "  --payload              include the payload (list; it may hold personal data)\n"
          "  --payload JSON         schedule: the jobs' payload (default {})\n"
          "  --finished-before T    a timestamp, or an interval from now ('-7 days') (purge)\n"
          "  --interval S           top: time between frames, default 1 (S: 2, 500ms, 1m)\n"
          "  --once                 print one frame and exit (top)\n"
          "  --limit N              top: count up to N jobs per queue and state (default\n"
          "                         100000; 0: all); a count shown as N+ is at least N\n"
          "  --missed P             fires missed while no rhino ran: latest (default: the\n"
          "                         newest one), all (each, the newest 1000), none (schedule)\n"
          "\n"
          "Queue options (each N, R or D may be \"none\": remove that setting; the others stay):\n"
          "  --max-running N        at most N jobs of the queue run at once, all hosts together\n"
          "  --per-node N           at most N at once on each host (rhino master)\n"
          "  --per-key N            at most N at once with one --concurrency-key\n"
          "  --rate R               at most R jobs per second start (a token bucket)\n"
          "  --burst N              ... and at most N at once after a pause (default: R)\n"
          "  --key-rate R           the same per --concurrency-key\n"
          "  --key-burst N          (default: R)\n"
          "  --aging D              every D, jobs that waited D move one priority up\n"
          "                         (D: 30, 30s, 500ms, 5m, 2h, 1d)\n"
          "\n"
          "General options:\n"
          "  -c, --config FILE      take [database] dsn from this rhino.ini\n"
          "  -h, --help             show this help\n"
          "  -V, --version          show the version\n"
          "\n"
          "The database: RHINO_DSN if set, else [database] dsn of -c FILE, else libpq's\n"
          "defaults (PGHOST, PGDATABASE, ... and ~/.pgpass).\n"
          "Exit status: 0 ok, 1 database error, job not found or operation refused, 2 usage error.\n", f);
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

/* "+10 min", "-7 days": an interval from now.  Anything else is a timestamp ("-infinity" too). */
static int
ctl_is_relative(const char *spec)
{
    return spec[0] == '+' || (spec[0] == '-' && (isdigit((unsigned char) spec[1]) || spec[1] == ' '));
}

/*
 * "infinity" or "-infinity" (any case, blanks around), which PostgreSQL
 * takes as a timestamp: a job due since ever or never, and no date for
 * to_char(), which makes NULL of it.  The server refuses other spellings.
 */
static int
ctl_is_infinite(const char *spec)
{
    while (isspace((unsigned char) *spec))
        spec++;
    if (*spec == '-' || *spec == '+')
        spec++;
    if (strncasecmp(spec, "infinity", 8) != 0)
        return 0;
    for (spec += 8; isspace((unsigned char) *spec); spec++)
        ;
    return *spec == '\0';
}

/*
 * Resolve a time option (--run-at, --finished-before) on the server, by its
 * clock: "+INTERVAL" or "-INTERVAL" from now, or a timestamp; NULL for now.
 * Fills ts (ISO 8601 UTC) and *future.  -1 on error (reported, naming opt).
 */
static int
ctl_resolve_time(PGconn *conn, const char *what, const char *opt, const char *spec,
                 char *ts, size_t tslen, int *future)
{
    const char *params[2] = { NULL, NULL };
    PGresult   *res;

    if (spec != NULL && ctl_is_relative(spec))
        params[1] = spec;
    else
        params[0] = spec;
    res = PQexecParams(conn, rh_sql(RH_STMT_CTL_RUN_AT)->sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ctl_err("%s: %s: %s", what, opt, ctl_pgmsg(conn, res));
        PQclear(res);
        return -1;
    }
    /* an infinite time spelled other than ctl_is_infinite knows: to_char() gave NULL */
    if (PQgetisnull(res, 0, 0)) {
        ctl_err("%s: %s: \"%s\" is not a finite time", what, opt, spec);
        PQclear(res);
        return -1;
    }
    snprintf(ts, tslen, "%s", PQgetvalue(res, 0, 0));
    *future = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    PQclear(res);
    return 0;
}

/*
 * --unique-for: the duration as the server parses intervals ('90 s',
 * '1 minute', '2 hours'), checked before the enqueue so that a bad one is
 * named as the option.  0 or -1 (reported).
 */
static int
ctl_check_duration(PGconn *conn, const char *opt, const char *spec)
{
    const char *params[1] = { spec };
    PGresult   *res;
    double      secs;

    res = PQexecParams(conn, rh_sql(RH_STMT_CTL_DURATION)->sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ctl_err("enqueue: %s: %s", opt, ctl_pgmsg(conn, res));
        PQclear(res);
        return -1;
    }
    secs = strtod(PQgetvalue(res, 0, 0), NULL);
    PQclear(res);
    if (!(secs > 0)) {
        ctl_err("enqueue: %s: \"%s\" is not longer than 0 (a duration: '90 s', '1 minute', '2 hours')", opt, spec);
        return -1;
    }
    return 0;
}

/*
 * Prints the id; with --unique-key also "new" or "existing" (a live job
 * with the key, or the job of the key's --unique-for window), and with
 * --json both as an object.  Without a key the output stays the bare id
 * that scripts read.
 */
static int
ctl_enqueue_one(PGconn *conn, const ctl_opts_t *o, const char *kind, const char *json)
{
    const char *params[9];
    char        ts[64];
    int         future, existing;
    PGresult   *res;

    params[0] = kind;
    params[1] = json ? json : "{}";
    params[2] = o->queue;
    params[3] = o->run_at;
    params[4] = o->priority;
    params[5] = o->max_attempts;
    params[6] = o->unique_key;
    params[7] = o->unique_for;
    params[8] = o->concurrency_key;
    /* an interval needs the server's now(); an absolute time goes straight in */
    if (o->run_at != NULL && ctl_is_relative(o->run_at)) {
        if (ctl_resolve_time(conn, "enqueue", "--run-at", o->run_at, ts, sizeof(ts), &future) < 0)
            return CTL_EXIT_ERROR;
        params[3] = ts;
    }
    if (o->unique_for != NULL && ctl_check_duration(conn, "--unique-for", o->unique_for) < 0)
        return CTL_EXIT_ERROR;
    res = PQexecParams(conn, rh_sql(RH_STMT_ENQUEUE)->sql, rh_sql(RH_STMT_ENQUEUE)->nparams,
                       NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        ctl_err("enqueue: %s", ctl_pgmsg(conn, res));
        PQclear(res);
        return CTL_EXIT_ERROR;
    }
    existing = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    if (o->json)
        printf("{\"id\":%s,\"existing\":%s}\n", PQgetvalue(res, 0, 0), existing ? "true" : "false");
    else if (o->unique_key != NULL)
        printf("%s %s\n", PQgetvalue(res, 0, 0), existing ? "existing" : "new");
    else
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
 * max_attempts, run_at, state and concurrency key, resolved once before the
 * COPY; only the payload varies.  The COPY and the wake-up of the queue's
 * listeners (one NOTIFY, if the jobs are due now) share one transaction, so
 * the daemons hear of the jobs when they commit and not before.
 */
static int
ctl_enqueue_bulk(PGconn *conn, const ctl_opts_t *o, const char *kind)
{
    ctl_buf_t   row_head = { 0 }, row_tail = { 0 }, buf = { 0 };
    ctl_skips_t skips = { 0 };
    char        ts[64], count[32] = "", *line = NULL;
    size_t      linecap = 0;
    ssize_t     n;
    long        lineno = 0;
    int         future, minimal, rc = CTL_EXIT_ERROR, in_copy = 0;
    PGresult   *res;

    if (ctl_resolve_time(conn, "enqueue --bulk", "--run-at", o->run_at, ts, sizeof(ts), &future) < 0)
        return CTL_EXIT_ERROR;

    /* "kind\tqueue\t" PAYLOAD, then "\tpriority\tmax_attempts\trun_at\tstate\tconcurrency_key\n" or "\n" */
    if (ctl_buf_copy_escaped(&row_head, kind, strlen(kind)) < 0 ||
        ctl_buf_add(&row_head, "\t", 1) < 0 ||
        ctl_buf_copy_escaped(&row_head, o->queue ? o->queue : CTL_DEFAULT_QUEUE,
                             strlen(o->queue ? o->queue : CTL_DEFAULT_QUEUE)) < 0 ||
        ctl_buf_add(&row_head, "\t", 1) < 0)
        goto oom;
    minimal = o->run_at == NULL && o->priority == NULL && o->max_attempts == NULL && o->concurrency_key == NULL;
    if (minimal) {
        /* "kind\tqueue\t" PAYLOAD "\n": RH_STMT_CTL_COPY_MIN, the rest by default */
        if (ctl_buf_add(&row_tail, "\n", 1) < 0)
            goto oom;
    } else {
        char tail[160];
        int  tn = snprintf(tail, sizeof(tail), "\t%s\t%s\t%s\t%s\t",
                           o->priority ? o->priority : CTL_DEFAULT_PRIORITY,
                           o->max_attempts ? o->max_attempts : CTL_DEFAULT_MAX_ATTEMPTS,
                           ts, future ? "scheduled" : "available");
        if (tn < 0 || (size_t) tn >= sizeof(tail) || ctl_buf_add(&row_tail, tail, (size_t) tn) < 0)
            goto oom;
        if (o->concurrency_key != NULL
            ? ctl_buf_copy_escaped(&row_tail, o->concurrency_key, strlen(o->concurrency_key)) < 0
            : ctl_buf_add(&row_tail, "\\N", 2) < 0)
            goto oom;
        if (ctl_buf_add(&row_tail, "\n", 1) < 0)
            goto oom;
    }

    res = PQexec(conn, "BEGIN");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        ctl_err("enqueue --bulk: %s", ctl_pgmsg(conn, res));
        PQclear(res);
        goto out;
    }
    PQclear(res);

    res = PQexec(conn, rh_sql(minimal ? RH_STMT_CTL_COPY_MIN : RH_STMT_CTL_COPY)->sql);
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
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        ctl_report_copy_error(conn, res, &skips);
    else
        snprintf(count, sizeof(count), "%s", PQcmdTuples(res));
    PQclear(res);
    /* drain to the end of the command */
    while ((res = PQgetResult(conn)) != NULL)
        PQclear(res);
    if (count[0] == '\0')
        goto out;               /* the server rolls the transaction back when we disconnect */
    if (!future && strcmp(count, "0") != 0) {
        const char *np[1] = { o->queue ? o->queue : CTL_DEFAULT_QUEUE };

        res = PQexecParams(conn, rh_sql(RH_STMT_CTL_NOTIFY)->sql, 1, NULL, np, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            ctl_err("enqueue --bulk: %s", ctl_pgmsg(conn, res));
            PQclear(res);
            goto out;
        }
        PQclear(res);
    }
    res = PQexec(conn, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK || strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        ctl_err("enqueue --bulk: COMMIT failed: %s", ctl_pgmsg(conn, res));
        PQclear(res);
        goto out;
    }
    PQclear(res);
    printf("enqueued %s jobs\n", count);
    rc = CTL_EXIT_OK;
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

/* Out of memory in a short-lived CLI: say so and stop. */
static void *
ctl_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL) {
        ctl_err("out of memory");
        exit(CTL_EXIT_ERROR);
    }
    return p;
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

/*
 * The columns [0, ncols) of one result row as one JSON object on one line,
 * named as the SQL names them.  Numbers and booleans are JSON numbers and
 * booleans, jsonb goes in as it is (PostgreSQL prints valid JSON), SQL NULL
 * is null, everything else (timestamps included) a string.
 */
static void
ctl_json_row(FILE *f, const PGresult *res, int row, int ncols)
{
    fputc('{', f);
    for (int i = 0; i < ncols; i++) {
        const char *v = PQgetvalue(res, row, i);

        if (i > 0)
            fputc(',', f);
        ctl_json_string(f, PQfname(res, i));
        fputc(':', f);
        if (PQgetisnull(res, row, i)) {
            fputs("null", f);
            continue;
        }
        switch (PQftype(res, i)) {
        case CTL_OID_INT2:
        case CTL_OID_INT4:
        case CTL_OID_INT8:
        case CTL_OID_JSON:
        case CTL_OID_JSONB:
            fputs(v, f);
            break;
        case CTL_OID_FLOAT8:
            /* NaN and Infinity have no JSON number */
            if (isalpha((unsigned char) v[strspn(v, "-")]))
                ctl_json_string(f, v);
            else
                fputs(v, f);
            break;
        case CTL_OID_BOOL:
            fputs(strcmp(v, "t") == 0 ? "true" : "false", f);
            break;
        default:
            ctl_json_string(f, v);
            break;
        }
    }
    fputs("}\n", f);
}

/* Print s and pad it to width characters (printf pads bytes; names may be UTF-8). */
static void
ctl_pad(const char *s, int width)
{
    int n = (int) ctl_utf8_len(s);

    fputs(s, stdout);
    if (n < width)
        printf("%*s", width - n, "");
}

/* One line of the stats table. */
static void
ctl_stats_row(int wq, const char *queue, int ws, const char *state, int wc, const char *count, int paused)
{
    ctl_pad(queue, wq);
    printf("  %-*s  %*s%s\n", ws, state, wc, count, paused ? "  paused" : "");
}

/* ---- queue limits and aging (sql/005_limits.sql) ------------------------------ */

static void ctl_duration(char *buf, size_t len, double s);     /* with top, below */

/*
 * One value of rhinoctl queue, checked before anything reaches the database:
 * "none", or a whole number from 1 (--max-running, --per-node, --per-key,
 * --burst, --key-burst), a rate in jobs per second (--rate, --key-rate), a
 * duration (--aging, kept in seconds).  0, or the exit code of a usage
 * error (reported).
 */
static int
ctl_queue_option(ctl_opts_t *o, int opt, const char *v)
{
    const char *name = ctl_long_options[0].name;
    int         i = opt - CTL_OPT_MAX_RUNNING;
    char       *end;
    double      d;

    for (const struct option *lo = ctl_long_options; lo->name != NULL; lo++)
        if (lo->val == opt)
            name = lo->name;
    if (strcmp(v, "none") == 0) {
        o->qset[i] = v;
        return 0;
    }
    switch (opt) {
    case CTL_OPT_RATE:
    case CTL_OPT_KEY_RATE:
        errno = 0;
        d = strtod(v, &end);
        if (errno != 0 || end == v || *end != '\0' || isspace((unsigned char) *v) || !isfinite(d) ||
            !(d > 0 && d <= 1000000))
            return ctl_value_err("--%s: \"%s\" is not a number of jobs per second above 0 and at most 1000000"
                                 " (or none)", name, v);
        break;
    case CTL_OPT_AGING: {
        double secs;

        /* the parser of the config file's durations (rh_config.c), so both take the same units */
        if (rh_parse_seconds(v, 0.001, 366.0 * 86400, &secs) < 0)
            return ctl_value_err("--aging: \"%s\" is not a duration from 1ms to 366d such as 30, 30s, 500ms, "
                                 "5m, 2h, 1d (or none)", v);
        snprintf(o->aging_s, sizeof(o->aging_s), "%.6f", secs);
        o->qset[i] = o->aging_s;
        return 0;
    }
    default:
        if (ctl_parse_long(v, 1, INT_MAX) < 0)
            return ctl_value_err("--%s: \"%s\" is not a whole number from 1 to %d (or none)", name, v, INT_MAX);
        break;
    }
    o->qset[i] = v;
    return 0;
}

/* RH_STMT_CTL_QUEUES for queue (NULL: every queue with limits or aging); NULL after reporting. */
static PGresult *
ctl_queues_fetch(PGconn *conn, const char *what, const char *queue)
{
    const char *p[1] = { queue };
    PGresult   *res = PQexecParams(conn, rh_sql(RH_STMT_CTL_QUEUES)->sql, 1, NULL, p, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ctl_err("%s: %s", what, ctl_pgmsg(conn, res));
        PQclear(res);
        return NULL;
    }
    return res;
}

/* A cell of the limits table: "-" for NULL, rates as "10/s", aging as a duration. */
static void
ctl_limits_cell(char *buf, size_t len, const PGresult *res, int row, int col)
{
    const char *v = PQgetvalue(res, row, col);
    const char *name = PQfname(res, col);

    if (PQgetisnull(res, row, col))
        snprintf(buf, len, "-");
    else if (strcmp(name, "rate") == 0 || strcmp(name, "key_rate") == 0)
        snprintf(buf, len, "%g/s", strtod(v, NULL));
    else if (strcmp(name, "aging") == 0)
        ctl_duration(buf, len, strtod(v, NULL));
    else
        snprintf(buf, len, "%s", v);
}

/* The rows of RH_STMT_CTL_QUEUES as a table, one queue per line. */
static void
ctl_limits_table(const PGresult *res)
{
    /* the result's columns 2..10, then running (11) */
    static const struct { const char *head; int col; } cols[] = {
        { "RUNNING", 10 }, { "MAX", 2 }, { "PER NODE", 3 }, { "PER KEY", 4 }, { "RATE", 5 }, { "BURST", 6 },
        { "KEY RATE", 7 }, { "KEY BURST", 8 }, { "AGING", 9 },
    };
    int  wq = 5, rows = PQntuples(res);
    char cell[64];

    for (int r = 0; r < rows; r++) {
        int l = (int) ctl_utf8_len(PQgetvalue(res, r, 0));
        wq = l > wq ? l : wq;
    }
    ctl_pad("QUEUE", wq);
    for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++)
        printf("  %*s", (int) strlen(cols[c].head) > 7 ? (int) strlen(cols[c].head) : 7, cols[c].head);
    putchar('\n');
    for (int r = 0; r < rows; r++) {
        ctl_pad(PQgetvalue(res, r, 0), wq);
        for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++) {
            ctl_limits_cell(cell, sizeof(cell), res, r, cols[c].col);
            printf("  %*s", (int) strlen(cols[c].head) > 7 ? (int) strlen(cols[c].head) : 7, cell);
        }
        printf("%s\n", strcmp(PQgetvalue(res, r, 1), "t") == 0 ? "  paused" : "");
    }
}

/* The row of queue in a RH_STMT_CTL_QUEUES result, or -1. */
static int
ctl_limits_row(const PGresult *res, const char *queue)
{
    for (int r = 0; res != NULL && r < PQntuples(res); r++)
        if (strcmp(PQgetvalue(res, r, 0), queue) == 0)
            return r;
    return -1;
}

/*
 * rhinoctl queue QUEUE [--max-running N ...]: change the settings given
 * (RH_STMT_CTL_QUEUE_SET keeps the others), then show the queue's.
 */
static int
ctl_queue(PGconn *conn, const ctl_opts_t *o, const char *queue)
{
    PGresult *res;
    int       any = 0, set = 0;

    for (int i = 0; i < CTL_QSET_N; i++)
        any |= o->qset[i] != NULL;
    if (any) {
        const char *p[1 + CTL_QSET_N];

        p[0] = queue;
        for (int i = 0; i < CTL_QSET_N; i++)
            p[1 + i] = o->qset[i];
        res = PQexecParams(conn, rh_sql(RH_STMT_CTL_QUEUE_SET)->sql, rh_sql(RH_STMT_CTL_QUEUE_SET)->nparams,
                           NULL, p, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            ctl_err("queue: %s", ctl_pgmsg(conn, res));
            PQclear(res);
            return CTL_EXIT_ERROR;
        }
        PQclear(res);
    }
    if ((res = ctl_queues_fetch(conn, "queue", queue)) == NULL)
        return CTL_EXIT_ERROR;
    if (PQntuples(res) != 1) {
        ctl_err("queue: expected one row for %s, got %d", queue, PQntuples(res));
        PQclear(res);
        return CTL_EXIT_ERROR;
    }
    if (o->json) {
        ctl_json_row(stdout, res, 0, PQnfields(res) - 1);
    } else {
        for (int c = 2; c <= 9; c++)
            set |= !PQgetisnull(res, 0, c);
        if (set)
            ctl_limits_table(res);
        else
            printf("queue %s has no limits and no aging (%s running)\n", queue, PQgetvalue(res, 0, 10));
    }
    PQclear(res);
    return CTL_EXIT_OK;
}

static int
ctl_stats(PGconn *conn, const ctl_opts_t *o)
{
    PGresult *res, *lim;
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
    /* queues with limits or aging: a table below, or a "limits" key in their JSON rows */
    if ((lim = ctl_queues_fetch(conn, "stats", NULL)) == NULL) {
        PQclear(res);
        return CTL_EXIT_ERROR;
    }

    if (o->json) {
        for (int i = 0; i < rows; i++) {
            fputs("{\"queue\":", stdout);
            ctl_json_string(stdout, PQgetvalue(res, i, 0));
            fputs(",\"state\":", stdout);
            if (PQgetisnull(res, i, 1))
                fputs("null", stdout);
            else
                ctl_json_string(stdout, PQgetvalue(res, i, 1));
            printf(",\"count\":%s,\"paused\":%s", PQgetvalue(res, i, 2),
                   strcmp(PQgetvalue(res, i, 3), "t") == 0 ? "true" : "false");
            int r = ctl_limits_row(lim, PQgetvalue(res, i, 0));

            if (r >= 0)
                printf(",\"limits\":%s", PQgetvalue(lim, r, PQnfields(lim) - 1));
            fputs("}\n", stdout);
        }
        /* a queue with limits but no jobs: one row with a NULL state, as for a paused one */
        for (int r = 0; r < PQntuples(lim); r++) {
            int seen = 0;

            for (int i = 0; i < rows && !seen; i++)
                seen = strcmp(PQgetvalue(res, i, 0), PQgetvalue(lim, r, 0)) == 0;
            if (seen)
                continue;
            fputs("{\"queue\":", stdout);
            ctl_json_string(stdout, PQgetvalue(lim, r, 0));
            printf(",\"state\":null,\"count\":0,\"paused\":%s,\"limits\":%s}\n",
                   strcmp(PQgetvalue(lim, r, 1), "t") == 0 ? "true" : "false", PQgetvalue(lim, r, PQnfields(lim) - 1));
        }
        PQclear(res);
        PQclear(lim);
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

    ctl_stats_row(wq, "QUEUE", ws, "STATE", wc, "COUNT", 0);
    for (int i = 0; i < rows; i++)
        ctl_stats_row(wq, PQgetvalue(res, i, 0), ws, PQgetisnull(res, i, 1) ? "-" : PQgetvalue(res, i, 1),
                      wc, PQgetvalue(res, i, 2), strcmp(PQgetvalue(res, i, 3), "t") == 0);
    ctl_stats_row(wq, "total", ws, "", wc, tbuf, 0);
    if (PQntuples(lim) > 0) {
        putchar('\n');
        ctl_limits_table(lim);
    }
    PQclear(res);
    PQclear(lim);
    return CTL_EXIT_OK;
}

/* ---- list, show ------------------------------------------------------------ */

/* A column of a people's table: its heading, the result column, how to show it. */
typedef struct {
    const char *head;
    const char *name;       /* result column */
    int         ts;         /* an ISO timestamp: shown to the second */
    size_t      cap;        /* at most this many characters (0 = all) */
} ctl_col_t;

/*
 * A cell as shown: "-" for NULL; control characters (a newline in an error)
 * as spaces, so that a row stays one line; cut at cap characters with "...".
 * malloc'd.
 */
static char *
ctl_cell(const PGresult *res, int row, int col, const ctl_col_t *c)
{
    const char *v = PQgetvalue(res, row, col);
    size_t      len = strlen(v), chars = 0;
    char       *out, *o;

    if (PQgetisnull(res, row, col))
        v = "-", len = 1;
    out = o = ctl_xmalloc(len + 4);
    if (c->ts && len >= 19 && !PQgetisnull(res, row, col)) {
        /* 2030-01-01T12:00:00.123456Z -> 2030-01-01T12:00:00Z */
        memcpy(out, v, 19);
        strcpy(out + 19, "Z");
        return out;
    }
    for (; *v; v++) {
        unsigned char ch = (unsigned char) *v;

        if ((ch & 0xC0) != 0x80 && c->cap > 0 && ++chars > c->cap) {
            strcpy(o, "...");
            return out;
        }
        *o++ = ch < 0x20 || ch == 0x7F ? ' ' : (char) ch;
    }
    *o = '\0';
    return out;
}

/* Rows of res as a table with the columns cols[0..ncols); the last column is not padded. */
static void
ctl_table(const PGresult *res, const ctl_col_t *cols, int ncols)
{
    int    rows = PQntuples(res), *width, *idx;
    char **cells;

    width = ctl_xmalloc(sizeof(int) * (size_t) ncols);
    idx = ctl_xmalloc(sizeof(int) * (size_t) ncols);
    cells = ctl_xmalloc(sizeof(char *) * (size_t) (rows * ncols));
    for (int c = 0; c < ncols; c++) {
        idx[c] = PQfnumber(res, cols[c].name);
        width[c] = (int) strlen(cols[c].head);
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < ncols; c++) {
            char *cell = ctl_cell(res, r, idx[c], &cols[c]);
            int   w = (int) ctl_utf8_len(cell);

            cells[r * ncols + c] = cell;
            width[c] = w > width[c] ? w : width[c];
        }
    for (int c = 0; c < ncols; c++) {
        if (c + 1 < ncols) {
            ctl_pad(cols[c].head, width[c]);
            fputs("  ", stdout);
        } else {
            puts(cols[c].head);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < ncols; c++) {
            char *cell = cells[r * ncols + c];

            if (c + 1 < ncols) {
                ctl_pad(cell, width[c]);
                fputs("  ", stdout);
            } else {
                puts(cell);
            }
            free(cell);
        }
    free(cells);
    free(idx);
    free(width);
}

static int
ctl_list(PGconn *conn, const ctl_opts_t *o)
{
    static const ctl_col_t cols[] = {
        { "ID",         "id",          0, 0 },
        { "QUEUE",      "queue",       0, 0 },
        { "KIND",       "kind",        0, 0 },
        { "STATE",      "state",       0, 0 },
        { "ATTEMPT",    "attempt",     0, 0 },
        { "ERRORS",     "errors",      0, 0 },
        { "CREATED",    "created_at",  1, 0 },
        { "FINISHED",   "finished_at", 1, 0 },
        { "LAST_ERROR", "last_error",  0, CTL_ERROR_WIDTH },
        { "PAYLOAD",    "payload",     0, 0 },
    };
    const int   ncols = (int) (sizeof(cols) / sizeof(cols[0]));
    const char *params[5];
    PGresult   *res;
    int         rows, ncol;

    params[0] = o->queue;
    params[1] = o->kind;
    params[2] = o->state;
    params[3] = o->limit ? o->limit : CTL_LIST_LIMIT;
    params[4] = o->payload ? "t" : "f";
    res = PQexecParams(conn, rh_sql(RH_STMT_CTL_LIST)->sql, rh_sql(RH_STMT_CTL_LIST)->nparams,
                       NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ctl_err("list: %s", ctl_pgmsg(conn, res));
        PQclear(res);
        return CTL_EXIT_ERROR;
    }
    rows = PQntuples(res);
    if (o->json) {
        /* payload is the last column: printed only when asked for */
        ncol = PQnfields(res) - (o->payload ? 0 : 1);
        for (int i = 0; i < rows; i++)
            ctl_json_row(stdout, res, i, ncol);
    } else {
        ctl_table(res, cols, o->payload ? ncols : ncols - 1);
    }
    PQclear(res);
    return CTL_EXIT_OK;
}

static int
ctl_show(PGconn *conn, const ctl_opts_t *o, const char *id)
{
    const char *params[1] = { id };
    PGresult   *res;

    res = PQexecParams(conn, rh_sql(RH_STMT_CTL_SHOW)->sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ctl_err("show: %s", ctl_pgmsg(conn, res));
        PQclear(res);
        return CTL_EXIT_ERROR;
    }
    if (PQntuples(res) == 0) {
        ctl_err("show: no job %s", id);
        PQclear(res);
        return CTL_EXIT_ERROR;
    }
    if (o->json) {
        ctl_json_row(stdout, res, 0, PQnfields(res));
    } else {
        for (int i = 0; i < PQnfields(res); i++)
            printf("%-13s %s\n", PQfname(res, i), PQgetisnull(res, 0, i) ? "-" : PQgetvalue(res, 0, i));
    }
    PQclear(res);
    return CTL_EXIT_OK;
}

/* ---- retry, cancel, purge ---------------------------------------------------- */

/*
 * A job's state now, for the message when a retry or cancel matched
 * nothing: the state as text (static buffer), "" if there is no such job,
 * NULL on a database error (reported).
 */
static const char *
ctl_job_state(PGconn *conn, const char *what, const char *id)
{
    static char state[32];
    char        arr[64];
    const char *params[1] = { arr };
    PGresult   *res;

    snprintf(arr, sizeof(arr), "{%s}", id);
    res = PQexecParams(conn, rh_sql(RH_STMT_JOB_STATES)->sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ctl_err("%s: %s", what, ctl_pgmsg(conn, res));
        PQclear(res);
        return NULL;
    }
    snprintf(state, sizeof(state), "%s", PQntuples(res) > 0 ? PQgetvalue(res, 0, 2) : "");
    PQclear(res);
    return state;
}

/* Progress of a long batch loop, on a terminal only: pipes and logs get the final line alone. */
static void
ctl_progress(int tty, const char *what, long long n)
{
    if (tty) {
        fprintf(stderr, "\r%s %lld jobs...", what, n);
        fflush(stderr);
    }
}

static void
ctl_progress_end(int tty)
{
    if (tty)
        fputs("\r\033[K", stderr);
}

/*
 * Run a batch statement until it matches nothing, adding up its row counts.
 * once: run it a single time (retry ID).  -1 on error (reported).
 */
static long long
ctl_batches(PGconn *conn, const char *what, const char *progress, rh_stmt_id_t stmt,
            const char *const *params, int once)
{
    int       tty = isatty(STDERR_FILENO);
    long long total = 0;

    for (;;) {
        PGresult *res = PQexecParams(conn, rh_sql(stmt)->sql, rh_sql(stmt)->nparams, NULL, params,
                                     NULL, NULL, 0);
        long long n;

        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
            ctl_progress_end(tty && total > 0);
            ctl_err("%s: %s (%lld jobs done before the error)", what, ctl_pgmsg(conn, res), total);
            PQclear(res);
            return -1;
        }
        /* a statement that returns a row says how many jobs it did (a batch row holds many) */
        if (PQresultStatus(res) == PGRES_TUPLES_OK)
            n = PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
        else
            n = strtoll(PQcmdTuples(res), NULL, 10);
        PQclear(res);
        total += n;
        if (n == 0 || once)
            break;
        ctl_progress(tty, progress, total);
    }
    ctl_progress_end(tty && total > 0 && !once);
    return total;
}

/*
 * Why retry ID left a discarded or cancelled job where it is: the job's
 * unique key is held by a newer live job (a second live job with the key
 * cannot exist), or, if not, another session was moving the job (the
 * redrive skips locked rows).  Reported.  The holder is looked up here, by
 * a statement of its own, and not taken from the redrive: a concurrent
 * enqueue that took the key while the redrive ran (RH_STMT_CTL_REDRIVE
 * skips the job then) committed before the redrive ended, so this sees it,
 * and the message is the same as for a holder that was there first.  Only
 * a holder that also finished in between is missed; "try again" is then
 * right too.
 */
static void
ctl_retry_why_not(PGconn *conn, const char *id, const char *state)
{
    const char *params[1] = { id };
    PGresult   *res;

    res = PQexecParams(conn, rh_sql(RH_STMT_CTL_KEY_HOLDER)->sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        ctl_err("retry: %s", ctl_pgmsg(conn, res));
    else if (PQntuples(res) > 0)
        ctl_err("retry: job %s is %s, but its unique key \"%s\" is held by live job %s; retry it once that job "
                "has finished", id, state, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
    else
        ctl_err("retry: job %s is %s, but another session was moving it; try again", id, state);
    PQclear(res);
}

/*
 * retry ID: a discarded or cancelled job; retry --discarded: every
 * discarded job (of --queue, of --kind) that finished before we started.
 */
static int
ctl_retry(PGconn *conn, const ctl_opts_t *o, const char *id)
{
    const char *params[6];
    char        now[64];
    int         future;
    long long   n;

    if (id == NULL && ctl_resolve_time(conn, "retry", "now", NULL, now, sizeof(now), &future) < 0)
        return CTL_EXIT_ERROR;
    params[0] = id;
    params[1] = o->queue;
    params[2] = o->kind;
    params[3] = id != NULL ? "t" : "f";         /* a cancelled job only by its id */
    params[4] = id != NULL ? "infinity" : now;
    params[5] = CTL_BATCH;
    n = ctl_batches(conn, "retry", "redriven", RH_STMT_CTL_REDRIVE, params, id != NULL);
    if (n < 0)
        return CTL_EXIT_ERROR;
    if (id != NULL && n == 0) {
        const char *state = ctl_job_state(conn, "retry", id);

        if (state == NULL)
            return CTL_EXIT_ERROR;
        if (*state == '\0')
            ctl_err("retry: no job %s", id);
        else if (strcmp(state, "completed") == 0)
            ctl_err("retry: job %s is completed; only discarded and cancelled jobs can be retried", id);
        else if (strcmp(state, "discarded") == 0 || strcmp(state, "cancelled") == 0)
            ctl_retry_why_not(conn, id, state);
        else
            ctl_err("retry: job %s is %s, not finished: there is nothing to retry", id, state);
        return CTL_EXIT_ERROR;
    }
    printf("redriven %lld jobs\n", n);
    return CTL_EXIT_OK;
}

static int
ctl_cancel(PGconn *conn, const char *id)
{
    const char *params[1] = { id }, *state;
    PGresult   *res;
    int         rc;

    res = PQexecParams(conn, rh_sql(RH_STMT_CTL_CANCEL)->sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        ctl_err("cancel: %s", ctl_pgmsg(conn, res));
        PQclear(res);
        return CTL_EXIT_ERROR;
    }
    state = PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0);
    rc = CTL_EXIT_OK;
    if (strcmp(state, "cancelled") == 0)
        printf("cancelled job %s\n", id);
    else if (strcmp(state, "cancel_requested") == 0)
        printf("job %s is running: cancellation requested; its handler is told and its worker stopped "
               "if the handler does not return within [worker] cancel_grace; it will not be retried\n", id);
    else if (*state == '\0') {
        ctl_err("cancel: no job %s", id);
        rc = CTL_EXIT_ERROR;
    } else {
        /* "already completed", "already discarded", "already cancelled" */
        ctl_err("cancel: job %s is %s", id, state);
        rc = CTL_EXIT_ERROR;
    }
    PQclear(res);
    return rc;
}

static int
ctl_purge(PGconn *conn, const ctl_opts_t *o)
{
    const char *params[2];
    char        ts[64];
    int         future;
    long long   n, nb;

    if (ctl_resolve_time(conn, "purge", "--finished-before", o->finished_before, ts, sizeof(ts), &future) < 0)
        return CTL_EXIT_ERROR;
    params[0] = ts;
    params[1] = CTL_BATCH;
    n = ctl_batches(conn, "purge", "purged", RH_STMT_CTL_PURGE, params, 0);
    if (n < 0)
        return CTL_EXIT_ERROR;
    /* completed jobs kept a batch to a row (sql/011_history_batches.sql) */
    nb = ctl_batches(conn, "purge", "purged", RH_STMT_CTL_PURGE_BATCHES, params, 0);
    if (nb < 0)
        return CTL_EXIT_ERROR;
    n += nb;
    printf("purged %lld jobs\n", n);
    return CTL_EXIT_OK;
}

/* ---- pause, resume -------------------------------------------------------------- */

static int
ctl_pause(PGconn *conn, const char *queue, int pause)
{
    const char *params[1] = { queue };
    rh_stmt_id_t stmt = pause ? RH_STMT_CTL_PAUSE : RH_STMT_CTL_RESUME;
    const char *what = pause ? "pause" : "resume";
    PGresult   *res;
    int         was_paused;

    res = PQexecParams(conn, rh_sql(stmt)->sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ctl_err("%s: %s", what, ctl_pgmsg(conn, res));
        PQclear(res);
        return CTL_EXIT_ERROR;
    }
    was_paused = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    if (pause && was_paused)
        printf("queue %s was already paused (since %s)\n", queue, PQgetvalue(res, 0, 1));
    else if (pause)
        printf("paused queue %s\n", queue);
    else if (was_paused)
        printf("resumed queue %s\n", queue);
    else
        printf("queue %s was not paused\n", queue);
    PQclear(res);
    return CTL_EXIT_OK;
}

/* ---- top ------------------------------------------------------------------------ */

static volatile sig_atomic_t ctl_top_stop;

static void
ctl_top_signal(int sig)
{
    (void) sig;
    ctl_top_stop = 1;
}

/* A duration for people: 0.4s, 42s, 5m03s, 2h05m, 3d04h. */
static void
ctl_duration(char *buf, size_t len, double s)
{
    long long t;

    /* a run_at of -infinity stored before schema 15: no number of days, and (long long) of it is undefined */
    if (!isfinite(s)) {
        snprintf(buf, len, "inf");
        return;
    }
    t = (long long) s;
    if (s < 10)
        snprintf(buf, len, "%.1fs", s);
    else if (t < 60)
        snprintf(buf, len, "%llds", t);
    else if (t < 3600)
        snprintf(buf, len, "%lldm%02llds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(buf, len, "%lldh%02lldm", t / 3600, t % 3600 / 60);
    else
        snprintf(buf, len, "%lldd%02lldh", t / 86400, t % 86400 / 3600);
}

/* Column c of row i of a top frame is true. */
static int
ctl_top_flag(const PGresult *q, int i, int c)
{
    return strcmp(PQgetvalue(q, i, c), "t") == 0;
}

/* One frame of top.  -1 on a database error (reported). */
static int
ctl_top_frame(PGconn *conn, const ctl_opts_t *o, int clear)
{
    static const char *const heads[] = {
        "AVAILABLE", "SCHEDULED", "RUNNING", "RETRYABLE", "COMPLETED/1m", "DISCARDED/1m", "JOBS/S", "OLDEST"
    };
    char        ival[32], tbuf[32], dbuf[32], cbuf[32], limit[32];
    const char *params[2] = { ival, o->top_limit > 0 ? limit : NULL };      /* NULL: count all */
    PGresult   *q, *n;
    int         wq = 5, wn = 4, capped = 0;
    time_t      now = time(NULL);
    struct tm   tm;

    snprintf(ival, sizeof(ival), "%g", o->interval);
    snprintf(limit, sizeof(limit), "%ld", o->top_limit);
    q = PQexecParams(conn, rh_sql(RH_STMT_CTL_TOP_QUEUES)->sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(q) != PGRES_TUPLES_OK) {
        ctl_err("top: %s", ctl_pgmsg(conn, q));
        PQclear(q);
        return -1;
    }
    n = PQexecParams(conn, rh_sql(RH_STMT_CTL_TOP_NODES)->sql, 0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(n) != PGRES_TUPLES_OK) {
        ctl_err("top: %s", ctl_pgmsg(conn, n));
        PQclear(q);
        PQclear(n);
        return -1;
    }

    for (int i = 0; i < PQntuples(q); i++) {
        int l = (int) ctl_utf8_len(PQgetvalue(q, i, 0));
        wq = l > wq ? l : wq;
    }
    for (int i = 0; i < PQntuples(n); i++) {
        int l = (int) ctl_utf8_len(PQgetvalue(n, i, 0));
        wn = l > wn ? l : wn;
    }

    if (clear)
        fputs("\033[H\033[2J", stdout);
    localtime_r(&now, &tm);
    strftime(tbuf, sizeof(tbuf), "%Y-%m-%d %H:%M:%S", &tm);
    printf("rhino top  %s  every %gs%s\n\n", tbuf, o->interval, clear ? "  (q to quit)" : "");

    ctl_pad("QUEUE", wq);
    for (size_t c = 0; c < sizeof(heads) / sizeof(heads[0]); c++)
        printf("  %*s", (int) strlen(heads[c]) > 9 ? (int) strlen(heads[c]) : 9, heads[c]);
    puts("  PAUSED");
    for (int i = 0; i < PQntuples(q); i++) {
        ctl_pad(PQgetvalue(q, i, 0), wq);
        for (int c = 1; c <= 6; c++) {
            /* a count that stopped at the limit (columns 10-12: available; running; scheduled and retryable) */
            int at_limit = (c == 1 && ctl_top_flag(q, i, 10)) || (c == 3 && ctl_top_flag(q, i, 11)) ||
                           ((c == 2 || c == 4) && ctl_top_flag(q, i, 12));

            capped |= at_limit;
            snprintf(cbuf, sizeof(cbuf), "%s%s", PQgetvalue(q, i, c), at_limit ? "+" : "");
            printf("  %*s", (int) strlen(heads[c - 1]) > 9 ? (int) strlen(heads[c - 1]) : 9, cbuf);
        }
        printf("  %9.1f", strtod(PQgetvalue(q, i, 7), NULL));
        if (PQgetisnull(q, i, 8))
            snprintf(dbuf, sizeof(dbuf), "-");
        else
            ctl_duration(dbuf, sizeof(dbuf), strtod(PQgetvalue(q, i, 8), NULL));
        printf("  %9s  %s\n", dbuf, strcmp(PQgetvalue(q, i, 9), "t") == 0 ? "yes" : "no");
    }
    if (PQntuples(q) == 0)
        puts("(no jobs)");
    if (capped)
        printf("(N+: at least N; top counts up to %s jobs per queue and state, --limit 0 counts all)\n", limit);

    putchar('\n');
    if (PQntuples(n) == 0) {
        puts("no live workers");
    } else {
        ctl_pad("NODE", wn);
        printf("  %8s  %7s  %7s  %s\n", "PID", "WORKERS", "RUNNING", "UP");
        for (int i = 0; i < PQntuples(n); i++) {
            ctl_duration(dbuf, sizeof(dbuf), strtod(PQgetvalue(n, i, 4), NULL));
            ctl_pad(PQgetvalue(n, i, 0), wn);
            printf("  %8s  %7s  %7s  %s\n", PQgetvalue(n, i, 1), PQgetvalue(n, i, 2), PQgetvalue(n, i, 3), dbuf);
        }
    }
    PQclear(q);
    PQclear(n);
    fflush(stdout);
    return 0;
}

/*
 * Wait one interval, or less if told to quit: SIGINT/SIGTERM, or 'q' on
 * stdin (a keypress on a terminal, in raw mode; a line from a pipe).
 * *watch_stdin drops to 0 at the end of stdin.  1 = quit.
 */
static int
ctl_top_wait(double interval, int *watch_stdin)
{
    struct timespec start, t;

    clock_gettime(CLOCK_MONOTONIC, &start);
    while (!ctl_top_stop) {
        struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN, .revents = 0 };
        double        left;
        int           r;

        clock_gettime(CLOCK_MONOTONIC, &t);
        left = interval - ((double) (t.tv_sec - start.tv_sec) + (double) (t.tv_nsec - start.tv_nsec) / 1e9);
        if (left <= 0)
            return 0;
        r = poll(&pfd, *watch_stdin ? 1 : 0, (int) ceil(left * 1000));
        if (r > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
            char    buf[64];
            ssize_t got = read(STDIN_FILENO, buf, sizeof(buf));

            if (got <= 0 && !(got < 0 && errno == EINTR))
                *watch_stdin = 0;       /* end of input: stop watching, keep refreshing */
            for (ssize_t i = 0; i < got; i++)
                if (buf[i] == 'q' || buf[i] == 'Q')
                    return 1;
        }
    }
    return 1;
}

/*
 * top: frames every --interval seconds.  On a terminal each frame replaces
 * the last (ANSI clear + home) and keys are read unbuffered; in a pipe the
 * frames follow each other, a blank line apart.  --once: one frame.
 */
static int
ctl_top(PGconn *conn, const ctl_opts_t *o)
{
    struct sigaction sa, ign, old_int, old_term, old_pipe;
    struct termios   saved, raw;
    int              tty_out = isatty(STDOUT_FILENO), raw_in = 0, watch_stdin = !o->once, rc = CTL_EXIT_OK;
    int              broken_pipe = 0;
    PGresult        *res;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ctl_top_signal;     /* no SA_RESTART: poll() returns at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    /* `rhinoctl top | head`: a write error ends the loop, so the terminal gets its mode back */
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old_pipe);
    if (!o->once && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
        raw = saved;
        raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        raw_in = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }

    res = PQexec(conn, rh_sql(RH_STMT_NO_PARALLEL)->sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        ctl_err("top: %s", ctl_pgmsg(conn, res));
        rc = CTL_EXIT_ERROR;
    }
    PQclear(res);

    for (int frame = 0; rc == CTL_EXIT_OK && !ctl_top_stop; frame++) {
        if (!(tty_out && !o->once) && frame > 0)
            putchar('\n');
        if (ctl_top_frame(conn, o, tty_out && !o->once) < 0) {
            rc = CTL_EXIT_ERROR;
            break;
        }
        if (ferror(stdout)) {
            broken_pipe = errno == EPIPE;
            break;              /* otherwise main reports it */
        }
        if (o->once || ctl_top_wait(o->interval, &watch_stdin))
            break;
    }

    if (raw_in)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    if (broken_pipe)
        raise(SIGPIPE);         /* the reader went away (`top | head`): end as any filter would */
    return rc;
}

/* ---- schedules ------------------------------------------------------------------ */

/*
 * rhinoctl schedule NAME CRON KIND [JSON]: create or change a schedule
 * through rhino.schedule(), which validates everything again and keeps an
 * unchanged expression's place in time.  The payload is the fourth word or
 * --payload=JSON ("--payload JSON" is the same to getopt: a fourth word).
 */
static int
ctl_schedule(PGconn *conn, const ctl_opts_t *o, char **args, int nargs)
{
    const char *payload = o->payload_json ? o->payload_json : (nargs == 4 ? args[3] : NULL);
    const char *p[10] = { args[0], args[1], args[2], payload, o->queue, o->priority, o->max_attempts,
                          NULL, o->missed, "sql" };
    PGresult   *res;
    rh_cron_t   c;
    int64_t     next;
    char        err[512], at[32] = "never", state[16];

    res = PQexecParams(conn, rh_sql(RH_STMT_SCHEDULE_UPSERT)->sql, rh_sql(RH_STMT_SCHEDULE_UPSERT)->nparams,
                       NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        ctl_err("schedule: %s", ctl_pgmsg(conn, res));
        PQclear(res);
        return CTL_EXIT_ERROR;
    }
    snprintf(state, sizeof(state), "%s", PQgetvalue(res, 0, 0));     /* created, changed, unchanged */
    PQclear(res);
    if (rh_cron_parse(args[1], &c, err, sizeof(err)) == 0 && rh_cron_next(&c, (int64_t) time(NULL), &next) == 0)
        rh_cron_format(next, at, sizeof(at));
    printf("schedule %s %s: \"%s\" enqueues %s on queue %s; next fire at %s\n", args[0], state, args[1], args[2],
           o->queue ? o->queue : "default", at);
    return CTL_EXIT_OK;
}

static int
ctl_unschedule(PGconn *conn, const char *name)
{
    const char *p[1] = { name };
    PGresult   *res;
    int         found;

    res = PQexecParams(conn, rh_sql(RH_STMT_CTL_UNSCHEDULE)->sql, 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        ctl_err("unschedule: %s", ctl_pgmsg(conn, res));
        PQclear(res);
        return CTL_EXIT_ERROR;
    }
    found = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!found) {
        ctl_err("unschedule: no schedule %s", name);
        return CTL_EXIT_ERROR;
    }
    printf("unscheduled %s\n", name);
    return CTL_EXIT_OK;
}

/*
 * rhinoctl schedules: one row per schedule.  The next fire time is computed
 * here from the expression and the database's clock (so it is right even
 * with no rhino running); the last one is the newest fire row.
 */
static int
ctl_schedules(PGconn *conn, const ctl_opts_t *o)
{
    static const char *const head[] = { "NAME", "CRON", "KIND", "QUEUE", "MISSED", "NEXT_FIRE", "LAST_FIRE",
                                        "SOURCE", "ERROR" };
    enum { NCOL = 9 };
    PGresult *res;
    int       rows, width[NCOL], any_error = 0;
    char    (*next)[64];

    res = PQexecParams(conn, rh_sql(RH_STMT_CTL_SCHEDULES)->sql, 0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ctl_err("schedules: %s", ctl_pgmsg(conn, res));
        PQclear(res);
        return CTL_EXIT_ERROR;
    }
    rows = PQntuples(res);
    next = ctl_xmalloc(sizeof(*next) * (size_t) (rows ? rows : 1));
    for (int r = 0; r < rows; r++) {
        rh_cron_t c;
        int64_t   after = strtoll(PQgetvalue(res, r, 14), NULL, 10), until = strtoll(PQgetvalue(res, r, 13), NULL, 10);
        int64_t   t;
        char      err[512];

        strcpy(next[r], "-");
        if (rh_cron_parse(PQgetvalue(res, r, 1), &c, err, sizeof(err)) == 0 &&
            rh_cron_next(&c, until > after ? until : after, &t) == 0)
            rh_cron_format(t, next[r], sizeof(next[r]));
        any_error |= !PQgetisnull(res, r, 11);
    }

    if (o->json) {
        /* the result's columns by name, and the computed next fire */
        static const int order[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, -1, 9, 10, 11, 12 };

        for (int r = 0; r < rows; r++) {
            putchar('{');
            for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
                int col = order[i];

                if (i > 0)
                    putchar(',');
                if (col < 0) {
                    fputs("\"next_fire\":", stdout);
                    if (strcmp(next[r], "-") == 0)
                        fputs("null", stdout);
                    else
                        ctl_json_string(stdout, next[r]);
                    continue;
                }
                ctl_json_string(stdout, PQfname(res, col));
                putchar(':');
                if (PQgetisnull(res, r, col))
                    fputs("null", stdout);
                else if (col == 8 && isalpha((unsigned char) PQgetvalue(res, r, col)[0]))
                    ctl_json_string(stdout, PQgetvalue(res, r, col));     /* Infinity has no JSON number */
                else if (col == 6 || col == 7 || col == 8 || col == 10 || col == 12)
                    fputs(PQgetvalue(res, r, col), stdout);        /* numbers, and the payload's JSON */
                else
                    ctl_json_string(stdout, PQgetvalue(res, r, col));
            }
            fputs("}\n", stdout);
        }
        free(next);
        PQclear(res);
        return CTL_EXIT_OK;
    }

    for (int i = 0; i < NCOL; i++)
        width[i] = (int) strlen(head[i]);
    for (int r = 0; r < rows; r++) {
        static const int cols[] = { 0, 1, 2, 3, 4, -1, 9, 5, 11 };

        for (int i = 0; i < NCOL; i++) {
            int w = cols[i] < 0 ? (int) strlen(next[r]) : (int) ctl_utf8_len(PQgetvalue(res, r, cols[i]));

            if (cols[i] == 9 && !PQgetisnull(res, r, 9))
                w = 20;         /* shown to the second */
            width[i] = w > width[i] ? w : width[i];
        }
    }
    for (int r = -1; r < rows; r++) {
        static const int cols[] = { 0, 1, 2, 3, 4, -1, 9, 5, 11 };
        int              ncol = any_error ? NCOL : NCOL - 1;

        for (int i = 0; i < ncol; i++) {
            char        cut[32];
            const char *v;

            if (r < 0)
                v = head[i];
            else if (cols[i] < 0)
                v = next[r];
            else if (PQgetisnull(res, r, cols[i]))
                v = "-";
            else
                v = PQgetvalue(res, r, cols[i]);
            if (r >= 0 && cols[i] == 9 && !PQgetisnull(res, r, 9)) {
                snprintf(cut, sizeof(cut), "%.19sZ", v);      /* 2030-01-01T03:00:00.000000Z -> ...:00Z */
                v = cut;
            }
            if (i + 1 < ncol) {
                ctl_pad(v, width[i]);
                fputs("  ", stdout);
            } else {
                puts(v);
            }
        }
    }
    free(next);
    PQclear(res);
    return CTL_EXIT_OK;
}

/* ---- the command line ------------------------------------------------------------ */

typedef enum {
    CTL_CMD_MIGRATE,
    CTL_CMD_ENQUEUE,
    CTL_CMD_STATS,
    CTL_CMD_LIST,
    CTL_CMD_SHOW,
    CTL_CMD_RETRY,
    CTL_CMD_CANCEL,
    CTL_CMD_PAUSE,
    CTL_CMD_RESUME,
    CTL_CMD_PURGE,
    CTL_CMD_TOP,
    CTL_CMD_SCHEDULE,
    CTL_CMD_SCHEDULES,
    CTL_CMD_UNSCHEDULE,
    CTL_CMD_QUEUE
} ctl_cmd_id_t;

/* A command: the options it takes and how many words follow it. */
typedef struct {
    const char   *name;
    ctl_cmd_id_t  id;
    unsigned      options;
    int           min_args, max_args;
    const char   *args;         /* what the words are, for "missing" */
} ctl_cmd_t;

#define CTL_ENQUEUE_OPTS (CTL_F(CTL_OPT_QUEUE) | CTL_F(CTL_OPT_RUN_AT) | CTL_F(CTL_OPT_PRIORITY) | \
                          CTL_F(CTL_OPT_MAX_ATTEMPTS) | CTL_F(CTL_OPT_BULK) | CTL_F(CTL_OPT_UNIQUE_KEY) | \
                          CTL_F(CTL_OPT_UNIQUE_FOR) | CTL_F(CTL_OPT_CONCURRENCY_KEY) | CTL_F(CTL_OPT_JSON))

static const ctl_cmd_t ctl_cmds[] = {
    { "migrate", CTL_CMD_MIGRATE, 0,                                             0, 0, NULL },
    { "enqueue", CTL_CMD_ENQUEUE, CTL_ENQUEUE_OPTS,                              1, 2, "the job's KIND" },
    { "stats",   CTL_CMD_STATS,   CTL_F(CTL_OPT_JSON),                           0, 0, NULL },
    { "list",    CTL_CMD_LIST,    CTL_F(CTL_OPT_QUEUE) | CTL_F(CTL_OPT_KIND) | CTL_F(CTL_OPT_STATE) |
                                  CTL_F(CTL_OPT_LIMIT) | CTL_F(CTL_OPT_PAYLOAD) | CTL_F(CTL_OPT_JSON), 0, 0, NULL },
    { "show",    CTL_CMD_SHOW,    CTL_F(CTL_OPT_JSON),                           1, 1, "the job ID" },
    { "retry",   CTL_CMD_RETRY,   CTL_F(CTL_OPT_DISCARDED) | CTL_F(CTL_OPT_QUEUE) | CTL_F(CTL_OPT_KIND),
                                                                                  0, 1, NULL },
    { "cancel",  CTL_CMD_CANCEL,  0,                                             1, 1, "the job ID" },
    { "pause",   CTL_CMD_PAUSE,   0,                                             1, 1, "the QUEUE" },
    { "resume",  CTL_CMD_RESUME,  0,                                             1, 1, "the QUEUE" },
    { "purge",   CTL_CMD_PURGE,   CTL_F(CTL_OPT_FINISHED_BEFORE),                0, 0, NULL },
    { "top",     CTL_CMD_TOP,     CTL_F(CTL_OPT_INTERVAL) | CTL_F(CTL_OPT_ONCE) | CTL_F(CTL_OPT_LIMIT),
                                                                                  0, 0, NULL },
    { "schedule", CTL_CMD_SCHEDULE, CTL_F(CTL_OPT_PAYLOAD) | CTL_F(CTL_OPT_QUEUE) | CTL_F(CTL_OPT_PRIORITY) |
                                    CTL_F(CTL_OPT_MAX_ATTEMPTS) | CTL_F(CTL_OPT_MISSED), 3, 4,
                                    "NAME, CRON and KIND" },
    { "schedules", CTL_CMD_SCHEDULES, CTL_F(CTL_OPT_JSON),                       0, 0, NULL },
    { "unschedule", CTL_CMD_UNSCHEDULE, 0,                                       1, 1, "the schedule's NAME" },
    { "queue",   CTL_CMD_QUEUE,   CTL_QSET_OPTS | CTL_F(CTL_OPT_JSON),           1, 1, "the QUEUE" },
};

/* "--queue" for CTL_OPT_QUEUE: the long option's name, from the table getopt uses. */
static const char *
ctl_opt_name(int opt)
{
    static char buf[64];

    for (const struct option *lo = ctl_long_options; lo->name != NULL; lo++)
        if (lo->val == opt) {
            snprintf(buf, sizeof(buf), "--%s", lo->name);
            return buf;
        }
    return "?";
}

/* A job id: a whole number from 1 up, nothing else. */
static int
ctl_check_id(const char *what, const char *s)
{
    char     *end;
    long long v;

    errno = 0;
    v = (*s == '\0' || isspace((unsigned char) *s)) ? 0 : strtoll(s, &end, 10);
    if (v < 1 || errno != 0 || *end != '\0')
        return ctl_value_err("%s: \"%s\" is not a job id (a whole number from 1)", what, s);
    return 0;
}

/*
 * What the command line says beyond getopt: the command, its words, options
 * that belong to it.  0, or the exit code of a usage error (reported).
 */
static int
ctl_check_command(const ctl_cmd_t *cmd, ctl_opts_t *o, char **args, int nargs)
{
    unsigned stray = o->given & ~cmd->options;

    if (stray != 0) {
        for (int opt = CTL_OPT_QUEUE; opt < CTL_OPT__END; opt++)
            if (stray & CTL_F(opt))
                return ctl_usage_err("%s: %s does not apply to %s", cmd->name, ctl_opt_name(opt), cmd->name);
    }
    if (nargs < cmd->min_args)
        return ctl_usage_err("%s: %s is missing", cmd->name, cmd->args);
    if (nargs > cmd->max_args)
        return ctl_usage_err("%s: unexpected argument \"%s\"", cmd->name, args[cmd->max_args]);

    switch (cmd->id) {
    case CTL_CMD_ENQUEUE:
        if (o->bulk && nargs > 1)
            return ctl_usage_err("enqueue: unexpected argument \"%s\" (with --bulk the payloads come from stdin)",
                                 args[1]);
        if (ctl_check_name("enqueue: KIND", args[0]) != 0 ||
            (o->queue != NULL && ctl_check_name("--queue", o->queue) != 0))
            return CTL_EXIT_USAGE;
        if (o->bulk && o->unique_key != NULL)
            return ctl_usage_err("enqueue: --unique-key does not apply to --bulk (every line would share the key)");
        if (o->bulk && o->json)
            return ctl_usage_err("enqueue: --json does not apply to --bulk (it prints a count, not ids)");
        if (o->unique_for != NULL && o->unique_key == NULL)
            return ctl_usage_err("enqueue: --unique-for needs --unique-key (the window is per key)");
        if (o->unique_key != NULL && (ctl_utf8_len(o->unique_key) < 1 || ctl_utf8_len(o->unique_key) > 512))
            return ctl_value_err("--unique-key: must be 1 to 512 characters long");
        if (o->unique_for != NULL && *o->unique_for == '\0')
            return ctl_value_err("--unique-for: empty (a duration: '90 s', '1 minute', '2 hours')");
        if (o->concurrency_key != NULL && *o->concurrency_key == '\0')
            return ctl_value_err("--concurrency-key: empty");
        if (o->run_at != NULL && ctl_is_infinite(o->run_at))
            return ctl_value_err("--run-at: \"%s\" is not a time a job can run at (a timestamp, or an "
                                 "interval from now: '+10 min'; leave --run-at out for now)", o->run_at);
        break;
    case CTL_CMD_LIST:
        if (o->limit != NULL && ctl_parse_long(o->limit, 1, CTL_LIST_MAX) < 0)
            return ctl_value_err("--limit: \"%s\" is not a whole number from 1 to %d", o->limit, CTL_LIST_MAX);
        if (o->payload_json != NULL)
            return ctl_usage_err("list: --payload takes no value (it says: show the payloads)");
        if ((o->queue != NULL && ctl_check_name("--queue", o->queue) != 0) ||
            (o->kind != NULL && ctl_check_name("--kind", o->kind) != 0))
            return CTL_EXIT_USAGE;
        if (o->state != NULL) {
            int known = 0;

            for (const char *const *s = ctl_states; *s; s++)
                known |= strcmp(*s, o->state) == 0;
            if (!known)
                return ctl_value_err("--state: \"%s\" is not one of available, scheduled, running, retryable, "
                                     "completed, discarded, cancelled", o->state);
        }
        break;
    case CTL_CMD_SHOW:
    case CTL_CMD_CANCEL:
        return ctl_check_id(cmd->name, args[0]);
    case CTL_CMD_RETRY:
        if (nargs == 1 && o->discarded)
            return ctl_usage_err("retry: give a job ID or --discarded, not both");
        if (nargs == 0 && !o->discarded)
            return ctl_usage_err("retry: the job ID or --discarded is missing");
        if (nargs == 1 && (o->queue != NULL || o->kind != NULL))
            return ctl_usage_err("retry: --queue and --kind go with --discarded");
        if ((o->queue != NULL && ctl_check_name("--queue", o->queue) != 0) ||
            (o->kind != NULL && ctl_check_name("--kind", o->kind) != 0))
            return CTL_EXIT_USAGE;
        return nargs == 1 ? ctl_check_id("retry", args[0]) : 0;
    case CTL_CMD_PAUSE:
    case CTL_CMD_RESUME:
        return ctl_check_name(cmd->id == CTL_CMD_PAUSE ? "pause: QUEUE" : "resume: QUEUE", args[0]);
    case CTL_CMD_SCHEDULE: {
        rh_cron_t c;
        char      err[512];

        if (o->payload && o->payload_json == NULL && nargs < 4)
            return ctl_usage_err("schedule: --payload needs a JSON value");
        if (o->payload_json != NULL && nargs == 4)
            return ctl_usage_err("schedule: two payloads (--payload and \"%s\")", args[3]);
        if (ctl_check_name("schedule: NAME", args[0]) != 0 || ctl_check_name("schedule: KIND", args[2]) != 0 ||
            (o->queue != NULL && ctl_check_name("--queue", o->queue) != 0))
            return CTL_EXIT_USAGE;
        if (rh_cron_parse(args[1], &c, err, sizeof(err)) < 0)
            return ctl_value_err("schedule: %s", err);
        break;
    }
    case CTL_CMD_UNSCHEDULE:
        return ctl_check_name("unschedule: NAME", args[0]);
    case CTL_CMD_TOP:
        if (o->limit != NULL && ctl_parse_long(o->limit, 0, CTL_TOP_MAX) < 0)
            return ctl_value_err("--limit: \"%s\" is not a whole number from 0 (count all) to %d", o->limit,
                                 CTL_TOP_MAX);
        o->top_limit = o->limit != NULL ? strtol(o->limit, NULL, 10) : CTL_TOP_LIMIT;  /* "00", "+5" too */
        break;
    case CTL_CMD_QUEUE:
        return ctl_check_name("queue: QUEUE", args[0]);
    case CTL_CMD_PURGE:
        if (o->finished_before == NULL)
            return ctl_usage_err("purge: --finished-before is missing (say which jobs: '-7 days', "
                                 "'2030-01-01')");
        if (*o->finished_before == '\0')
            return ctl_value_err("--finished-before: empty");
        if (ctl_is_infinite(o->finished_before))
            return ctl_value_err("--finished-before: \"%s\" is not a finite time (a timestamp, or an interval "
                                 "from now: '-7 days'; every finished job: now)", o->finished_before);
        break;
    default:
        break;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    ctl_opts_t       o = { 0 };
    const ctl_cmd_t *cmd = NULL;
    char           **args;
    int              c, nargs, rc;
    PGconn          *conn;

    o.interval = 1;
    opterr = 1;     /* getopt's own "unrecognized option" line, then our usage */
    while ((c = getopt_long(argc, argv, "c:hV", ctl_long_options, NULL)) != -1) {
        if (c >= CTL_OPT_QUEUE && c < CTL_OPT__END)
            o.given |= CTL_F(c);
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
            break;
        case CTL_OPT_RUN_AT:
            o.run_at = optarg;
            break;
        case CTL_OPT_PRIORITY:
            if (ctl_parse_long(optarg, -32768, 32767) < 0)
                return ctl_value_err("--priority: \"%s\" is not a whole number from -32768 to 32767", optarg);
            o.priority = optarg;
            break;
        case CTL_OPT_MAX_ATTEMPTS:
            if (ctl_parse_long(optarg, 1, INT_MAX) < 0)
                return ctl_value_err("--max-attempts: \"%s\" is not a whole number from 1 to %d",
                                     optarg, INT_MAX);
            o.max_attempts = optarg;
            break;
        case CTL_OPT_BULK:
            o.bulk = 1;
            break;
        case CTL_OPT_JSON:
            o.json = 1;
            break;
        case CTL_OPT_KIND:
            o.kind = optarg;
            break;
        case CTL_OPT_STATE:
            o.state = optarg;
            break;
        case CTL_OPT_LIMIT:
            o.limit = optarg;       /* its range is the command's: ctl_check_command */
            break;
        case CTL_OPT_PAYLOAD:
            o.payload = 1;
            o.payload_json = optarg;        /* --payload=JSON (schedule) */
            break;
        case CTL_OPT_DISCARDED:
            o.discarded = 1;
            break;
        case CTL_OPT_FINISHED_BEFORE:
            o.finished_before = optarg;
            break;
        case CTL_OPT_INTERVAL:
            if (rh_parse_seconds(optarg, 0.1, 3600, &o.interval) < 0)
                return ctl_value_err("--interval: \"%s\" is not a duration from 0.1 to 3600 seconds "
                                     "(such as 2, 500ms, 1m)", optarg);
            break;
        case CTL_OPT_MISSED:
            if (rh_schedule_parse_missed(optarg) < 0)
                return ctl_value_err("--missed: \"%s\" is not one of latest, all, none", optarg);
            o.missed = optarg;
            break;
        case CTL_OPT_ONCE:
            o.once = 1;
            break;
        case CTL_OPT_UNIQUE_KEY:
            o.unique_key = optarg;
            break;
        case CTL_OPT_UNIQUE_FOR:
            o.unique_for = optarg;
            break;
        case CTL_OPT_CONCURRENCY_KEY:
            o.concurrency_key = optarg;
            break;
        case CTL_OPT_MAX_RUNNING:
        case CTL_OPT_PER_NODE:
        case CTL_OPT_PER_KEY:
        case CTL_OPT_RATE:
        case CTL_OPT_BURST:
        case CTL_OPT_KEY_RATE:
        case CTL_OPT_KEY_BURST:
        case CTL_OPT_AGING:
            if ((rc = ctl_queue_option(&o, c, optarg)) != 0)
                return rc;
            break;
        default:
            fputc('\n', stderr);
            ctl_usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }

    if (optind >= argc)
        return ctl_usage_err("no command given");
    for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
        if (strcmp(argv[optind], ctl_cmds[i].name) == 0)
            cmd = &ctl_cmds[i];
    if (cmd == NULL)
        return ctl_usage_err("unknown command \"%s\"", argv[optind]);
    args = argv + optind + 1;
    nargs = argc - optind - 1;
    rc = ctl_check_command(cmd, &o, args, nargs);
    if (rc != 0)
        return rc;

    conn = ctl_connect(&o);
    if (conn == NULL)
        return CTL_EXIT_ERROR;

    if (cmd->id == CTL_CMD_MIGRATE) {
        rc = ctl_migrate(conn);
    } else if (ctl_require_schema(conn, cmd->name) < 0) {
        rc = CTL_EXIT_ERROR;
    } else {
        switch (cmd->id) {
        case CTL_CMD_ENQUEUE:
            rc = o.bulk ? ctl_enqueue_bulk(conn, &o, args[0])
                        : ctl_enqueue_one(conn, &o, args[0], nargs == 2 ? args[1] : NULL);
            break;
        case CTL_CMD_STATS:
            rc = ctl_stats(conn, &o);
            break;
        case CTL_CMD_LIST:
            rc = ctl_list(conn, &o);
            break;
        case CTL_CMD_SHOW:
            rc = ctl_show(conn, &o, args[0]);
            break;
        case CTL_CMD_RETRY:
            rc = ctl_retry(conn, &o, nargs == 1 ? args[0] : NULL);
            break;
        case CTL_CMD_CANCEL:
            rc = ctl_cancel(conn, args[0]);
            break;
        case CTL_CMD_PAUSE:
        case CTL_CMD_RESUME:
            rc = ctl_pause(conn, args[0], cmd->id == CTL_CMD_PAUSE);
            break;
        case CTL_CMD_PURGE:
            rc = ctl_purge(conn, &o);
            break;
        case CTL_CMD_TOP:
            rc = ctl_top(conn, &o);
            break;
        case CTL_CMD_SCHEDULE:
            rc = ctl_schedule(conn, &o, args, nargs);
            break;
        case CTL_CMD_SCHEDULES:
            rc = ctl_schedules(conn, &o);
            break;
        case CTL_CMD_UNSCHEDULE:
            rc = ctl_unschedule(conn, args[0]);
            break;
        case CTL_CMD_QUEUE:
            rc = ctl_queue(conn, &o, args[0]);
            break;
        default:
            rc = CTL_EXIT_ERROR;
            break;
        }
    }
    PQfinish(conn);

    /* a job id lost to a full disk or a closed pipe is a failure */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ctl_err("cannot write to stdout: %s", strerror(errno));
        return CTL_EXIT_ERROR;
    }
    return rc;
}
