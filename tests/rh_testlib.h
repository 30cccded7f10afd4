/*
 * rh_testlib.h - helpers shared by the check suites: a fresh database per
 * test against the PostgreSQL that scripts/test starts (RHINO_TEST_DSN),
 * running the real binaries, waiting on SQL conditions.
 *
 * Environment (set by `make check` / scripts/test):
 *   RHINO_TEST_DSN       DSN of a superuser connection to the test cluster (required
 *                        by DB tests: they fail, not skip, when it is missing)
 *   RHINO_BIN            path of the built rhino
 *   RHINOCTL_BIN         path of the built rhinoctl
 *   RHINO_TEST_HANDLERS  directory of the test handler .so files
 */
#ifndef RH_TESTLIB_H
#define RH_TESTLIB_H

#include <stddef.h>
#include <sys/types.h>
#include <libpq-fe.h>

/* Paths from the environment; abort the test with a clear message if unset. */
const char *rt_env(const char *name);

/*
 * SQL that writes completed jobs into the history as the workers do, a batch
 * to a row (sql/011_history_batches.sql): one row per group of the rows of
 * `from`, whose column g is the job id; finished_at is the expression fin.
 */
#define RT_BATCH_INSERT(fin, from, group) \
    "INSERT INTO rhino.jobs_done_batches (finished_at, min_id, max_id, id, queue, kind, payload, priority," \
    "   attempt, errors, max_attempts, run_at, created_at, attempted_at, crash_count, last_error, unique_key," \
    "   concurrency_key, timeout, cancel_requested_at)" \
    " SELECT " fin ", min(g), max(g), array_agg(g::bigint), array_agg('default'::text), array_agg('ok'::text)," \
    "        array_agg('{}'::jsonb), array_agg(0::smallint), array_agg(1), array_agg(0), array_agg(25)," \
    "        array_agg(now()), array_agg(now()), array_agg(now()), array_agg(0), array_agg(NULL::text)," \
    "        array_agg(NULL::text), array_agg(NULL::text), array_agg(NULL::float8), array_agg(NULL::timestamptz)" \
    "   FROM " from " " group

/* Create an empty database with a unique name; returns its DSN (malloc'd). */
char *rt_db_create(void);
/* Same, then run `rhinoctl migrate` on it (asserting exit 0). */
char *rt_db_create_migrated(void);

/*
 * A role of this run's own: "rt_<pid>_<n>_<time>_<what>", created with
 * options ("LOGIN", "NOLOGIN", ...), dropped (DROP OWNED, DROP ROLE) when the
 * process exits, after its databases.  Returns the name (malloc'd).
 */
char *rt_role_create(const char *what, const char *options);
/* dsn connecting as role instead (malloc'd); the test cluster trusts its local users. */
char *rt_dsn_as(const char *dsn, const char *role);

PGconn *rt_connect(const char *dsn);                         /* asserts success */
void    rt_exec(PGconn *conn, const char *sql);              /* asserts success */
/* First column of the first row as a malloc'd string (NULL if SQL NULL or no row). */
char   *rt_query1(PGconn *conn, const char *sql);
long    rt_query_long(PGconn *conn, const char *sql);        /* asserts one non-NULL value */

/*
 * Run argv[0] with extra environment entries ("K=V", NULL-terminated, may be
 * NULL), feeding stdin_text (may be NULL) and capturing stdout and stderr into
 * malloc'd strings (out/err may be NULL).  Returns the exit code, or 128+signal.
 */
int   rt_run(char *const argv[], char *const env[], const char *stdin_text, char **out, char **err);

/*
 * Run rhinoctl with the NULL-terminated arguments, RHINO_DSN set to dsn (or
 * removed from the environment when dsn is NULL), stdin_text (may be NULL)
 * on stdin; as rt_run.  At most 16 arguments.
 */
int   rt_ctl(const char *dsn, const char *stdin_text, char **out, char **err, ...);

/* Start argv in the background with env added, stdout+stderr appended to logpath. */
pid_t rt_spawn(char *const argv[], char *const env[], const char *logpath);
/* Wait up to timeout seconds; returns exit code, 128+signal, or -1 on timeout. */
int   rt_wait_exit(pid_t pid, double timeout);

/* Write an INI file into a fresh temp dir; returns its path (malloc'd). */
char *rt_write_file(const char *name, const char *content);
/* Read a whole file (malloc'd, NUL-terminated; NULL if missing). */
char *rt_read_file(const char *path);
/*
 * Compile C source into a shared object name in a fresh temp dir (with $CC
 * or cc); returns its path (malloc'd).  For what no checked-in test handler
 * provides: a clock shim for LD_PRELOAD, a library whose constructor hangs.
 */
char *rt_build_so(const char *name, const char *src);

/* Poll sql (which returns one boolean) every 50 ms until 't' or timeout; 1 if reached. */
int   rt_wait_sql(PGconn *conn, const char *sql, double timeout);
/* rt_exec and rt_query_long of a statement made by printf from fmt (at most 2047 bytes). */
void  rt_execf(PGconn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
long  rt_query_longf(PGconn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Whether, within timeout, the session of `blocked` waits for a lock (a row
 * or a unique index entry that an open transaction wrote), as observer sees
 * it in pg_stat_activity.  observer must not be inside a transaction: there
 * pg_stat_activity is a snapshot taken at its first use.
 */
int   rt_wait_lock(PGconn *observer, PGconn *blocked, double timeout);

double rt_now(void);   /* monotonic seconds */

/* The direct children of parent (a master's workers and reaper), from /proc; at most max. */
int   rt_children_of(pid_t parent, pid_t *out, int max);

/*
 * A rhino daemon for one test: a fresh migrated database, a config with the
 * test handlers (tests/handlers/test_handlers.so) plus `extra` INI lines, a
 * ledger file the handlers append one line per run to, and the log.
 */
typedef struct {
    char   *dsn;
    PGconn *conn;
    char   *ini;
    char    ledger[4096];
    char    log[4096];
    char    env_dsn[4200];
    char    env_ledger[4200];
    pid_t   pid;
    int     allow_errors;   /* the test provokes failures; otherwise no error may be logged */
} rt_daemon_t;

const char *rt_handlers_so(void);
/*
 * rhino's log at path, if there is one: no sanitizer or valgrind report (the
 * master would just respawn the process that made it) and, unless
 * allow_errors, no error line.  who names the daemon in the message, or NULL.
 */
void rt_check_log(const char *path, const char *who, int allow_errors);
void rt_daemon_setup(rt_daemon_t *d, const char *extra);
/* The same on a database the caller made and migrated (dsn, malloc'd, is the daemon's from then on). */
void rt_daemon_setup_dsn(rt_daemon_t *d, char *dsn, const char *extra);
void rt_daemon_start(rt_daemon_t *d);
void rt_daemon_stop(rt_daemon_t *d);        /* SIGTERM; asserts a clean exit */
/* Kill what is left; assert no sanitizer report and, unless allow_errors, no error logged. */
void rt_daemon_teardown(rt_daemon_t *d);
void rt_daemon_dump_log(rt_daemon_t *d);
/* rt_wait_sql, or dump the log and fail the test. */
void rt_daemon_wait(rt_daemon_t *d, const char *sql, double timeout);
/* Ledger lines per job id 1..n: a calloc'd array of n+1 counts. */
int *rt_daemon_ledger_counts(rt_daemon_t *d, long n);

#endif
