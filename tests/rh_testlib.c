/*
 * rh_testlib.c - the helpers behind rh_testlib.h: scratch databases on the
 * test cluster, running the built binaries, polling for SQL conditions.
 *
 * Every failure in here fails the calling test (ck_assert / ck_abort_msg), so
 * that a suite reads as a list of expectations rather than of error checks.
 *
 * What a test creates (databases, roles, temp directories) is removed when
 * the process that created it exits normally, unless RHINO_TEST_KEEP=1 asks to
 * keep it.  A failing assertion ends check's forked test child with _exit(),
 * so a failed test's files, database and roles stay for a post-mortem
 * (scripts/test drops leftover rt_* databases and roles at its next start).  atexit handlers are
 * inherited by fork(), so every resource records the pid that owns it and
 * only that process cleans it up.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "rh_testlib.h"

extern char **environ;

/* ---- growing strings ------------------------------------------------------ */

typedef struct {
    char   *data;
    size_t  len, cap;
} rt_buf_t;

static void
buf_append(rt_buf_t *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char  *grown;

        while (b->len + n + 1 > cap)
            cap *= 2;
        grown = realloc(b->data, cap);
        ck_assert_ptr_nonnull(grown);
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static char *
buf_take(rt_buf_t *b)
{
    if (b->data == NULL)
        buf_append(b, "", 0);
    return b->data;
}

/* ---- cleanup at exit ---------------------------------------------------- */

typedef enum { RT_RES_DIR, RT_RES_DB, RT_RES_ROLE } rt_res_kind_t;

typedef struct {
    pid_t         owner;
    rt_res_kind_t kind;
    char         *name;     /* a directory path, a database or a role name */
} rt_resource_t;

static rt_resource_t *rt_resources;
static size_t         rt_nresources;
static int            rt_atexit_done;

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    remove(path);
    return 0;
}

/*
 * No assertions here: a failure at exit can only be ignored.  Roles go
 * last: a role that owns a database, or holds rights in one, can be dropped
 * only once that database is gone.
 */
static void
rt_cleanup(void)
{
    const char *keep = getenv("RHINO_TEST_KEEP");
    const char *dsn = getenv("RHINO_TEST_DSN");
    PGconn     *conn = NULL;
    pid_t       me = getpid();

    if (keep != NULL && strcmp(keep, "1") == 0)
        return;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < rt_nresources; i++) {
            rt_resource_t *r = &rt_resources[i];
            char           sql[256];

            if (r->owner != me || (r->kind == RT_RES_ROLE) != (pass == 1))
                continue;
            if (r->kind == RT_RES_DIR) {
                nftw(r->name, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
                continue;
            }
            if (dsn == NULL)
                continue;
            if (conn == NULL) {
                conn = PQconnectdb(dsn);
                if (PQstatus(conn) != CONNECTION_OK) {
                    PQfinish(conn);
                    return;
                }
            }
            if (r->kind == RT_RES_DB) {
                /* FORCE: a daemon the test started may still be connected to it */
                snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", r->name);
                PQclear(PQexec(conn, sql));
            } else {
                /* what it owns or was granted in the test cluster's own database, then itself */
                snprintf(sql, sizeof(sql), "DROP OWNED BY \"%s\"", r->name);
                PQclear(PQexec(conn, sql));
                snprintf(sql, sizeof(sql), "DROP ROLE IF EXISTS \"%s\"", r->name);
                PQclear(PQexec(conn, sql));
            }
        }
    PQfinish(conn);
}

static void
rt_remember(rt_res_kind_t kind, const char *name)
{
    rt_resource_t *grown;

    if (!rt_atexit_done) {
        ck_assert_int_eq(atexit(rt_cleanup), 0);
        rt_atexit_done = 1;
    }
    grown = realloc(rt_resources, sizeof(*grown) * (rt_nresources + 1));
    ck_assert_ptr_nonnull(grown);
    rt_resources = grown;
    rt_resources[rt_nresources].owner = getpid();
    rt_resources[rt_nresources].kind = kind;
    rt_resources[rt_nresources].name = strdup(name);
    ck_assert_ptr_nonnull(rt_resources[rt_nresources].name);
    rt_nresources++;
}

/* ---- environment, time -------------------------------------------------- */

const char *
rt_env(const char *name)
{
    const char *v = getenv(name);

    if (v == NULL || *v == '\0')
        ck_abort_msg("environment variable %s is not set: run the tests through `make check` or "
                     "scripts/test (a test cluster's DSN is printed by tests/pgcluster.sh env)", name);
    return v;
}

double
rt_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
rt_sleep(double seconds)
{
    struct timespec ts;

    ts.tv_sec = (time_t) seconds;
    ts.tv_nsec = (long) ((seconds - (double) ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- databases ---------------------------------------------------------- */

static void
ignore_notice(void *arg, const char *message)
{
    (void) arg;
    (void) message;
}

PGconn *
rt_connect(const char *dsn)
{
    PGconn *conn = PQconnectdb(dsn);

    ck_assert_ptr_nonnull(conn);
    if (PQstatus(conn) != CONNECTION_OK)
        ck_abort_msg("cannot connect to the test database: %s", PQerrorMessage(conn));
    /* "NOTICE: ... does not exist, skipping" would only clutter the test logs */
    PQsetNoticeProcessor(conn, ignore_notice, NULL);
    return conn;
}

void
rt_exec(PGconn *conn, const char *sql)
{
    PGresult      *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        ck_abort_msg("SQL failed: %s\n  statement: %s", PQresultErrorMessage(res), sql);
    PQclear(res);
}

char *
rt_query1(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    char     *v = NULL;

    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        ck_abort_msg("query failed: %s\n  query: %s", PQresultErrorMessage(res), sql);
    if (PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0)) {
        v = strdup(PQgetvalue(res, 0, 0));
        ck_assert_ptr_nonnull(v);
    }
    PQclear(res);
    return v;
}

long
rt_query_long(PGconn *conn, const char *sql)
{
    char *v = rt_query1(conn, sql);
    char *end;
    long  n;

    if (v == NULL)
        ck_abort_msg("query returned no row or NULL where a number was expected: %s", sql);
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0')
        ck_abort_msg("query returned \"%s\", not a whole number: %s", v, sql);
    free(v);
    return n;
}

int
rt_wait_sql(PGconn *conn, const char *sql, double timeout)
{
    double deadline = rt_now() + timeout;

    for (;;) {
        char *v = rt_query1(conn, sql);
        int   yes = v != NULL && strcmp(v, "t") == 0;

        free(v);
        if (yes)
            return 1;
        if (rt_now() >= deadline)
            return 0;
        rt_sleep(0.05);
    }
}

void
rt_execf(PGconn *conn, const char *fmt, ...)
{
    char    sql[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    rt_exec(conn, sql);
}

long
rt_query_longf(PGconn *conn, const char *fmt, ...)
{
    char    sql[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    return rt_query_long(conn, sql);
}

int
rt_wait_lock(PGconn *observer, PGconn *blocked, double timeout)
{
    char sql[160];

    snprintf(sql, sizeof(sql), "SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = %d AND wait_event_type = 'Lock'",
             PQbackendPID(blocked));
    return rt_wait_sql(observer, sql, timeout);
}

/* All direct children of pid (workers and reaper), from /proc. */
int
rt_children_of(pid_t parent, pid_t *out, int max)
{
    DIR           *d = opendir("/proc");
    struct dirent *e;
    int            n = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL && n < max) {
        char  path[300], buf[512], *rp;
        FILE *f;
        int   ppid;
        pid_t pid = (pid_t) atoi(e->d_name);

        if (pid <= 0)
            continue;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fgets(buf, sizeof(buf), f) != NULL && (rp = strrchr(buf, ')')) != NULL
            && sscanf(rp + 2, "%*c %d", &ppid) == 1 && ppid == parent)
            out[n++] = pid;
        fclose(f);
    }
    closedir(d);
    return n;
}

/* Append "key=value" to a libpq connection string, quoting the value only if it must be. */
static void
conninfo_append(rt_buf_t *b, const char *key, const char *val)
{
    int quote = *val == '\0' || strpbrk(val, " \t\n\r\f\v'\\") != NULL;

    if (b->len > 0)
        buf_append(b, " ", 1);
    buf_append(b, key, strlen(key));
    buf_append(b, quote ? "='" : "=", quote ? 2 : 1);
    for (const char *p = val; *p; p++) {
        if (quote && (*p == '\'' || *p == '\\'))
            buf_append(b, "\\", 1);
        buf_append(b, p, 1);
    }
    if (quote)
        buf_append(b, "'", 1);
}

/*
 * dsn with keyword key set to val (dbname, user).  PQconninfoParse accepts
 * both URIs and key=value strings and, unlike PQconndefaults, returns only
 * what the string itself sets, so PG* variables still apply as they would
 * to the original DSN.
 */
static char *
dsn_with(const char *dsn, const char *key, const char *val)
{
    PQconninfoOption *opts;
    char             *errmsg = NULL;
    rt_buf_t          b = { 0 };

    opts = PQconninfoParse(dsn, &errmsg);
    if (opts == NULL)
        ck_abort_msg("not a valid connection string: %s", errmsg ? errmsg : "out of memory");
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (o->val != NULL && strcmp(o->keyword, key) != 0)
            conninfo_append(&b, o->keyword, o->val);
    conninfo_append(&b, key, val);
    PQconninfoFree(opts);
    return buf_take(&b);
}

char *
rt_dsn_as(const char *dsn, const char *role)
{
    return dsn_with(dsn, "user", role);
}

char *
rt_role_create(const char *what, const char *options)
{
    static unsigned counter;
    struct timespec ts;
    char            name[64], sql[256];
    PGconn         *conn;

    /* unique as database names are; a role is the cluster's, seen by every run and test */
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(name, sizeof(name), "rt_%ld_%u_%lld%06ld_%s", (long) getpid(), ++counter,
             (long long) ts.tv_sec, ts.tv_nsec / 1000, what);
    ck_assert_msg(strlen(name) < 63, "role name too long: %s", name);
    conn = rt_connect(rt_env("RHINO_TEST_DSN"));
    snprintf(sql, sizeof(sql), "CREATE ROLE \"%s\" %s", name, options ? options : "");
    rt_exec(conn, sql);
    PQfinish(conn);
    rt_remember(RT_RES_ROLE, name);
    return strdup(name);
}

char *
rt_db_create(void)
{
    static unsigned counter;
    const char     *base = rt_env("RHINO_TEST_DSN");
    struct timespec ts;
    char            name[64], sql[128];
    PGconn         *conn;

    /* pid + counter are unique among live tests; the time guards against pid reuse across runs */
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(name, sizeof(name), "rt_%ld_%u_%lld%06ld", (long) getpid(), ++counter,
             (long long) ts.tv_sec, ts.tv_nsec / 1000);
    conn = rt_connect(base);
    /*
     * template0 accepts no connections, so concurrent test programs can all
     * copy it; template1 fails while anyone is connected to it.
     */
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\" TEMPLATE template0", name);
    rt_exec(conn, sql);
    PQfinish(conn);
    rt_remember(RT_RES_DB, name);
    return dsn_with(base, "dbname", name);
}

char *
rt_db_create_migrated(void)
{
    char       *dsn = rt_db_create();
    char       *env_dsn, *out = NULL, *err = NULL;
    const char *ctl = rt_env("RHINOCTL_BIN");
    char       *argv[] = { (char *) ctl, (char *) "migrate", NULL };
    char       *env[2];
    int         rc;

    ck_assert_int_ge(asprintf(&env_dsn, "RHINO_DSN=%s", dsn), 0);
    env[0] = env_dsn;
    env[1] = NULL;
    rc = rt_run(argv, env, NULL, &out, &err);
    if (rc != 0)
        ck_abort_msg("`%s migrate` exited %d\nstdout:\n%s\nstderr:\n%s", ctl, rc, out, err);
    free(env_dsn);
    free(out);
    free(err);
    return dsn;
}

/* ---- processes ---------------------------------------------------------- */

/*
 * environ with the entries of extra applied: "K=V" sets K, a bare "K" removes
 * it (for a test that needs, say, RHINO_DSN unset).  Built before fork so the
 * child only calls async-signal-safe functions.
 */
static char **
build_env(char *const extra[])
{
    size_t n = 0, nextra = 0, o = 0;
    char **env;

    while (environ[n] != NULL)
        n++;
    while (extra != NULL && extra[nextra] != NULL)
        nextra++;
    env = calloc(n + nextra + 1, sizeof(char *));
    ck_assert_ptr_nonnull(env);
    for (size_t i = 0; i < n; i++) {
        int overridden = 0;

        for (size_t j = 0; j < nextra && !overridden; j++) {
            size_t klen = strcspn(extra[j], "=");
            overridden = strncmp(environ[i], extra[j], klen) == 0 && environ[i][klen] == '=';
        }
        if (!overridden)
            env[o++] = environ[i];
    }
    for (size_t j = 0; j < nextra; j++)
        if (strchr(extra[j], '=') != NULL)
            env[o++] = extra[j];
    env[o] = NULL;
    return env;
}

/*
 * In the child, after the standard descriptors are in place: close what the
 * test holds (libpq sockets, other pipes) so the program cannot keep them
 * open, restore SIGPIPE (rt_run ignores it, and exec keeps SIG_IGN), exec.
 */
static void
child_exec(char *const argv[], char **env)
{
    char msg[512];
    int  n;

    close_range(3, ~0U, 0);
    signal(SIGPIPE, SIG_DFL);
    execvpe(argv[0], argv, env);
    /* the test reads this from the program's stderr or log: exit 127 alone says little */
    n = snprintf(msg, sizeof(msg), "rh_testlib: cannot execute %s: %s\n", argv[0], strerror(errno));
    if (n > 0 && write(2, msg, (size_t) n) < 0)
        _exit(127);
    _exit(127);
}

static int
decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int
rt_run(char *const argv[], char *const env[], const char *stdin_text, char **out, char **err)
{
    int               in_p[2], out_p[2], err_p[2], st;
    char            **envp = build_env(env);
    pid_t             pid;
    rt_buf_t          obuf = { 0 }, ebuf = { 0 };
    size_t            in_len = stdin_text ? strlen(stdin_text) : 0, in_off = 0;
    struct sigaction  ign, old;

    ck_assert_msg(argv != NULL && argv[0] != NULL, "rt_run: empty argv");
    ck_assert_int_eq(pipe2(in_p, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(out_p, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(err_p, O_CLOEXEC), 0);

    /* a program that exits without reading its stdin must not kill the test with SIGPIPE */
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old);

    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(in_p[0], 0);
        dup2(out_p[1], 1);
        dup2(err_p[1], 2);
        child_exec(argv, envp);
    }
    free(envp);
    close(in_p[0]);
    close(out_p[1]);
    close(err_p[1]);
    if (in_len == 0) {
        close(in_p[1]);
        in_p[1] = -1;
    } else {
        fcntl(in_p[1], F_SETFL, fcntl(in_p[1], F_GETFL) | O_NONBLOCK);
    }

    /*
     * Poll all three pipes together: a child that fills its stderr pipe while
     * we block writing its stdin (or reading its stdout) would deadlock us.
     */
    while (out_p[0] >= 0 || err_p[0] >= 0 || in_p[1] >= 0) {
        struct pollfd pfd[3] = {
            { out_p[0], POLLIN, 0 }, { err_p[0], POLLIN, 0 }, { in_p[1], POLLOUT, 0 },
        };
        char          chunk[8192];

        if (poll(pfd, 3, -1) < 0) {
            ck_assert_int_eq(errno, EINTR);
            continue;
        }
        for (int i = 0; i < 2; i++) {
            int     *fd = i == 0 ? &out_p[0] : &err_p[0];
            ssize_t  n;

            if (*fd < 0 || pfd[i].revents == 0)
                continue;
            n = read(*fd, chunk, sizeof(chunk));
            if (n > 0) {
                buf_append(i == 0 ? &obuf : &ebuf, chunk, (size_t) n);
            } else if (n == 0 || errno != EINTR) {
                close(*fd);
                *fd = -1;
            }
        }
        if (in_p[1] >= 0 && pfd[2].revents != 0) {
            ssize_t n = write(in_p[1], stdin_text + in_off, in_len - in_off);

            if (n > 0)
                in_off += (size_t) n;
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || in_off == in_len) {
                close(in_p[1]);     /* done, or EPIPE: the child stopped reading */
                in_p[1] = -1;
            }
        }
    }
    sigaction(SIGPIPE, &old, NULL);

    while (waitpid(pid, &st, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    if (out != NULL)
        *out = buf_take(&obuf);
    else
        free(obuf.data);
    if (err != NULL)
        *err = buf_take(&ebuf);
    else
        free(ebuf.data);
    return decode_status(st);
}

pid_t
rt_spawn(char *const argv[], char *const env[], const char *logpath)
{
    char **envp = build_env(env);
    int    logfd, nullfd;
    pid_t  pid;

    ck_assert_msg(argv != NULL && argv[0] != NULL, "rt_spawn: empty argv");
    logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0)
        ck_abort_msg("cannot open %s: %s", logpath, strerror(errno));
    nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(nullfd, 0);
    /*
     * The child stays in the test's process group: tests signal it by pid,
     * and check kills the whole group of a test that times out, which must
     * include the daemons it started.
     */
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(nullfd, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        child_exec(argv, envp);
    }
    free(envp);
    close(logfd);
    close(nullfd);
    return pid;
}

int
rt_wait_exit(pid_t pid, double timeout)
{
    double deadline = rt_now() + timeout;
    int    st;

    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);

        if (r == pid)
            return decode_status(st);
        if (r < 0 && errno != EINTR)
            ck_abort_msg("waitpid(%ld) failed: %s (not a child of this test?)", (long) pid, strerror(errno));
        if (rt_now() >= deadline)
            return -1;
        rt_sleep(0.01);
    }
}

/* ---- files -------------------------------------------------------------- */

char *
rt_write_file(const char *name, const char *content)
{
    const char *tmp = getenv("TMPDIR");
    char        dir[4096];
    char       *path;
    FILE       *f;

    snprintf(dir, sizeof(dir), "%s/rt_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL)
        ck_abort_msg("mkdtemp(%s) failed: %s", dir, strerror(errno));
    rt_remember(RT_RES_DIR, dir);
    ck_assert_int_ge(asprintf(&path, "%s/%s", dir, name), 0);
    f = fopen(path, "w");
    if (f == NULL)
        ck_abort_msg("cannot create %s: %s", path, strerror(errno));
    ck_assert_int_eq(fputs(content, f) < 0, 0);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

char *
rt_build_so(const char *name, const char *src)
{
    char       *c = rt_write_file("so.c", src), *so, *err = NULL;
    const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
    char       *argv[] = { (char *) cc, "-shared", "-fPIC", "-o", NULL, c, "-ldl", NULL };
    int         rc;

    ck_assert_int_ge(asprintf(&so, "%.*s%s", (int) (strrchr(c, '/') + 1 - c), c, name), 0);
    argv[4] = so;
    rc = rt_run(argv, NULL, NULL, NULL, &err);
    ck_assert_msg(rc == 0, "%s could not compile %s: %s", cc, name, err ? err : "");
    free(err);
    return so;
}

char *
rt_read_file(const char *path)
{
    FILE    *f = fopen(path, "r");
    rt_buf_t b = { 0 };
    char     chunk[8192];
    size_t   n;

    if (f == NULL)
        return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    if (ferror(f))
        ck_abort_msg("cannot read %s: %s", path, strerror(errno));
    fclose(f);
    return buf_take(&b);
}

#define RT_CTL_MAX_ARGS 16

int
rt_ctl(const char *dsn, const char *stdin_text, char **out, char **err, ...)
{
    char       *argv[RT_CTL_MAX_ARGS + 2], *env[2], *env_dsn = NULL;
    const char *a;
    va_list     ap;
    int         n = 0, rc;

    argv[n++] = (char *) rt_env("RHINOCTL_BIN");
    va_start(ap, err);
    while ((a = va_arg(ap, const char *)) != NULL) {
        ck_assert_int_lt(n, RT_CTL_MAX_ARGS);
        argv[n++] = (char *) a;
    }
    va_end(ap);
    argv[n] = NULL;

    if (dsn != NULL)
        ck_assert_int_ge(asprintf(&env_dsn, "RHINO_DSN=%s", dsn), 0);
    /* a bare name removes the variable: no RHINO_DSN leaking in from the caller */
    env[0] = env_dsn ? env_dsn : (char *) "RHINO_DSN";
    env[1] = NULL;
    rc = rt_run(argv, env, stdin_text, out, err);
    free(env_dsn);
    return rc;
}

/* ---- a rhino daemon per test ------------------------------------------ */


const char *
rt_handlers_so(void)
{
    static char path[4096];

    snprintf(path, sizeof(path), "%s/test_handlers.so", rt_env("RHINO_TEST_HANDLERS"));
    return path;
}

/* A fresh migrated database and a config with the test handlers plus extra lines. */
void
rt_daemon_setup(rt_daemon_t *d, const char *extra)
{
    rt_daemon_setup_dsn(d, rt_db_create_migrated(), extra);
}

void
rt_daemon_setup_dsn(rt_daemon_t *d, char *dsn, const char *extra)
{
    char  ini[8192];
    char *slash;

    memset(d, 0, sizeof(*d));
    d->dsn = dsn;
    d->conn = rt_connect(d->dsn);
    snprintf(ini, sizeof(ini),
             "[worker]\nprocesses = 2\nbatch_size = 100\npoll_interval = 0.05\n"
             "[handlers]\npath = %s\n"
             "[retry]\nbase_delay = 0.05\nmax_delay = 0.2\n"
             "[reaper]\ninterval = 0.1\n"
             "[master]\nshutdown_timeout = 20\n"
             "%s", rt_handlers_so(), extra ? extra : "");
    d->ini = rt_write_file("rhino.ini", ini);
    snprintf(d->ledger, sizeof(d->ledger), "%s", d->ini);
    slash = strrchr(d->ledger, '/');
    strcpy(slash + 1, "ledger");
    snprintf(d->log, sizeof(d->log), "%s", d->ini);
    slash = strrchr(d->log, '/');
    strcpy(slash + 1, "rhino.log");
    snprintf(d->env_dsn, sizeof(d->env_dsn), "RHINO_DSN=%s", d->dsn);
    snprintf(d->env_ledger, sizeof(d->env_ledger), "RHINO_TEST_LEDGER=%s", d->ledger);
}

void
rt_daemon_start(rt_daemon_t *d)
{
    char *argv[] = { (char *) rt_env("RHINO_BIN"), "-c", d->ini, NULL };
    char *env[] = { d->env_dsn, d->env_ledger, NULL };

    d->pid = rt_spawn(argv, env, d->log);
    ck_assert_int_gt(d->pid, 0);
}

void
rt_daemon_dump_log(rt_daemon_t *d)
{
    char *log = rt_read_file(d->log);

    fprintf(stderr, "---- rhino log ----\n%s-------------------\n", log ? log : "(none)");
    free(log);
}

/* SIGTERM and expect a clean exit. */
void
rt_daemon_stop(rt_daemon_t *d)
{
    int rc;

    if (d->pid <= 0)
        return;
    kill(d->pid, SIGTERM);
    rc = rt_wait_exit(d->pid, 30);
    if (rc != 0)
        rt_daemon_dump_log(d);
    ck_assert_msg(rc == 0, "rhino exited with %d after SIGTERM", rc);
    d->pid = 0;
}

/*
 * The sanitizers report from inside the daemon's processes, which the
 * master would simply respawn: read their reports out of the log.
 */
/* A valgrind report: a line "==PID== ..." (scripts/test runs rhino under valgrind -q once). */
static int
has_valgrind_report(const char *log)
{
    for (const char *p = log; (p = strstr(p, "==")) != NULL; p += 2) {
        const char *q = p + 2;

        if (p != log && p[-1] != '\n')
            continue;
        while (*q >= '0' && *q <= '9')
            q++;
        if (q > p + 2 && q[0] == '=' && q[1] == '=')
            return 1;
    }
    return 0;
}

void
rt_check_log(const char *path, const char *who, int allow_errors)
{
    char *log = rt_read_file(path);

    if (log == NULL)
        return;
    ck_assert_msg(strstr(log, "Sanitizer") == NULL && strstr(log, "runtime error:") == NULL,
                  "a sanitizer reported from inside rhino%s%s:\n%s", who ? " " : "", who ? who : "", log);
    ck_assert_msg(!has_valgrind_report(log), "valgrind reported from inside rhino%s%s:\n%s",
                  who ? " " : "", who ? who : "", log);
    ck_assert_msg(allow_errors || strstr(log, "level=error") == NULL,
                  "rhino%s%s logged an error in a test that provokes none:\n%s", who ? " " : "", who ? who : "", log);
    free(log);
}

void
rt_daemon_teardown(rt_daemon_t *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGKILL);
        rt_wait_exit(d->pid, 5);
    }
    PQfinish(d->conn);
    rt_check_log(d->log, NULL, d->allow_errors);
}

void
rt_daemon_wait(rt_daemon_t *d, const char *sql, double timeout)
{
    if (!rt_wait_sql(d->conn, sql, timeout)) {
        char *states = rt_query1(d->conn, "SELECT string_agg(state || '=' || n, ' ') FROM "
                                 "(SELECT state::text, count(*) n FROM rhino.all_jobs GROUP BY 1) s");
        rt_daemon_dump_log(d);
        ck_abort_msg("timed out after %.0f s waiting for: %s (jobs: %s)", timeout, sql,
                     states ? states : "none");
    }
}

/*
 * Count ledger lines per job id (ids 1..n in a fresh database).  Returns a
 * calloc'd array of n+1 counts.
 */
int *
rt_daemon_ledger_counts(rt_daemon_t *d, long n)
{
    int  *counts = calloc((size_t) n + 1, sizeof(int));
    char *text = rt_read_file(d->ledger), *save = NULL, *line;

    ck_assert_ptr_nonnull(counts);
    if (text == NULL)
        return counts;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char kind[64];
        long id;
        int  attempt, pid;

        ck_assert_int_eq(sscanf(line, "%63s %ld %d %d", kind, &id, &attempt, &pid), 4);
        ck_assert_msg(id >= 1 && id <= n, "ledger names job %ld outside 1..%ld", id, n);
        counts[id]++;
    }
    free(text);
    return counts;
}
