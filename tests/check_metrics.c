/*
 * check_metrics.c - GET /metrics ([metrics] listen): the real rhino against
 * a real PostgreSQL, scraped with a plain socket client.  The counters must
 * say what the database says, the histograms must be consistent, and every
 * line must parse as the Prometheus text format 0.0.4.
 */
#include "config.h"

#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "rh_metrics.h"
#include "rh_testlib.h"

typedef struct {
    char   *dsn;
    PGconn *conn;
    char   *ini;
    char    log[4096];
    char    env_dsn[4200];
    int     port;
    pid_t   pid;
    int     allow_errors;
} mt_t;

/* A port nobody listens on right now (bound to 0, read back, closed). */
static int
free_port(void)
{
    struct sockaddr_in a = { 0 };
    socklen_t          len = sizeof(a);
    int                fd = socket(AF_INET, SOCK_STREAM, 0), port;

    ck_assert_int_ge(fd, 0);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *) &a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void
mt_setup(mt_t *t, const char *listen_line)
{
    char  ini[8192], listen[128];
    char *slash;

    memset(t, 0, sizeof(*t));
    t->dsn = rt_db_create_migrated();
    t->conn = rt_connect(t->dsn);
    t->port = free_port();
    snprintf(listen, sizeof(listen), "listen = 127.0.0.1:%d\n", t->port);
    snprintf(ini, sizeof(ini),
             "[worker]\nprocesses = 3\nbatch_size = 50\npoll_interval = 0.05\nqueues = default, mail\n"
             "[handlers]\npath = %s\n"
             "[retry]\nbase_delay = 0.05\nmax_delay = 0.1\n"
             "[reaper]\ninterval = 0.1\n"
             "[metrics]\n%s", rt_handlers_so(), listen_line ? listen_line : listen);
    t->ini = rt_write_file("rhino.ini", ini);
    snprintf(t->log, sizeof(t->log), "%s", t->ini);
    slash = strrchr(t->log, '/');
    strcpy(slash + 1, "rhino.log");
    snprintf(t->env_dsn, sizeof(t->env_dsn), "RHINO_DSN=%s", t->dsn);
}

static void
mt_start(mt_t *t)
{
    char *argv[] = { (char *) rt_env("RHINO_BIN"), "-c", t->ini, NULL };
    char *env[] = { t->env_dsn, NULL };

    t->pid = rt_spawn(argv, env, t->log);
    ck_assert_int_gt(t->pid, 0);
}

static void
dump_log(mt_t *t)
{
    char *log = rt_read_file(t->log);

    fprintf(stderr, "---- rhino log ----\n%s-------------------\n", log ? log : "(none)");
    free(log);
}

static void
mt_teardown(mt_t *t)
{
    if (t->pid > 0) {
        kill(t->pid, SIGKILL);
        rt_wait_exit(t->pid, 5);
    }
    PQfinish(t->conn);
    free(t->dsn);
    free(t->ini);
    rt_check_log(t->log, NULL, t->allow_errors);
}

/* A graceful stop that must exit 0, then the teardown (which checks the log). */
static void
mt_stop(mt_t *t)
{
    kill(t->pid, SIGTERM);
    ck_assert_int_eq(rt_wait_exit(t->pid, 30), 0);
    t->pid = 0;
    mt_teardown(t);
}

/*
 * One HTTP/1.0 request on a fresh connection; returns the whole response
 * (malloc'd), or NULL if nothing listens yet.
 */
static char *
http_get(int port, const char *path)
{
    struct sockaddr_in a = { 0 };
    int                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    char               req[256], *buf = NULL;
    size_t             len = 0, cap = 0;
    struct timeval     tv = { 5, 0 };

    ck_assert_int_ge(fd, 0);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t) port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0) {
        close(fd);
        return NULL;
    }
    snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t) strlen(req));
    for (;;) {
        ssize_t n;

        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        ck_assert_msg(n >= 0, "reading the response failed: %s", strerror(errno));
        if (n == 0)
            break;
        len += (size_t) n;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

/* GET /metrics: asserts 200 and the 0.0.4 content type; returns the body (malloc'd). */
static char *
scrape(mt_t *t)
{
    char *resp = NULL, *body;
    double deadline = rt_now() + 10;

    while ((resp = http_get(t->port, "/metrics")) == NULL && rt_now() < deadline)
        usleep(50 * 1000);
    if (resp == NULL)
        dump_log(t);
    ck_assert_msg(resp != NULL, "nothing listens on 127.0.0.1:%d", t->port);
    ck_assert_msg(strncmp(resp, "HTTP/1.", 7) == 0 && strncmp(resp + 8, " 200", 4) == 0, "not 200:\n%.300s", resp);
    body = strstr(resp, "\r\n\r\n");
    ck_assert_ptr_nonnull(body);
    *body = '\0';
    ck_assert_msg(strstr(resp, "text/plain; version=0.0.4") != NULL, "content type is not 0.0.4:\n%s", resp);
    body = strdup(body + 4);
    free(resp);
    return body;
}

/* Validate one sample line: name{label="v",...} value.  Returns 1 if it parses. */
static int
parse_sample(const char *line, char *name, size_t namelen, char *labels, size_t lablen, double *value)
{
    const char *p = line, *start;
    char       *end;
    size_t      n;

    if (!(isalpha((unsigned char) *p) || *p == '_' || *p == ':'))
        return 0;
    start = p;
    while (isalnum((unsigned char) *p) || *p == '_' || *p == ':')
        p++;
    n = (size_t) (p - start);
    if (n >= namelen)
        return 0;
    memcpy(name, start, n);
    name[n] = '\0';
    labels[0] = '\0';
    if (*p == '{') {
        start = p;
        p++;
        while (*p != '}') {
            if (!(isalpha((unsigned char) *p) || *p == '_'))
                return 0;
            while (isalnum((unsigned char) *p) || *p == '_')
                p++;
            if (*p++ != '=' || *p++ != '"')
                return 0;
            while (*p != '"') {
                if (*p == '\0' || *p == '\n')
                    return 0;
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n')
                        return 0;
                }
                p++;
            }
            p++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return 0;
        }
        p++;
        n = (size_t) (p - start);
        if (n >= lablen)
            return 0;
        memcpy(labels, start, n);
        labels[n] = '\0';
    }
    if (*p++ != ' ')
        return 0;
    if (strcmp(p, "+Inf") == 0 || strcmp(p, "-Inf") == 0 || strcmp(p, "NaN") == 0) {
        *value = strcmp(p, "NaN") == 0 ? NAN : (p[0] == '-' ? -INFINITY : INFINITY);
        return 1;
    }
    errno = 0;
    *value = strtod(p, &end);
    return errno == 0 && end != p && *end == '\0';
}

/* Check every line; returns the number of samples. */
static int
check_format(const char *body)
{
    char *copy = strdup(body), *save = NULL, *line;
    int   samples = 0;

    ck_assert_ptr_nonnull(copy);
    ck_assert_msg(body[0] != '\0' && body[strlen(body) - 1] == '\n', "the body does not end with a newline");
    for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char   name[256], labels[1024];
        double v;

        if (line[0] == '#') {
            ck_assert_msg(strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0,
                          "a comment that is neither HELP nor TYPE: %s", line);
            if (strncmp(line, "# TYPE ", 7) == 0) {
                const char *type = strrchr(line, ' ') + 1;
                ck_assert_msg(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                              strcmp(type, "histogram") == 0, "unknown type: %s", line);
            }
            continue;
        }
        ck_assert_msg(parse_sample(line, name, sizeof(name), labels, sizeof(labels), &v),
                      "not name{labels} value: \"%s\"", line);
        samples++;
    }
    free(copy);
    return samples;
}

/* The value of the sample `series` (name plus labels exactly as rendered); -1 if absent. */
static double
metric(const char *body, const char *series)
{
    size_t      len = strlen(series);
    const char *p = body;

    while ((p = strstr(p, series)) != NULL) {
        if ((p == body || p[-1] == '\n') && p[len] == ' ')
            return strtod(p + len + 1, NULL);
        p += len;
    }
    return -1;
}

/* The query `head` (which ends in WHERE or AND) restricted to one queue and kind. */
static long
q(mt_t *t, const char *head, const char *queue, const char *kind)
{
    char sql[1024];

    snprintf(sql, sizeof(sql), "%s queue = '%s' AND kind = '%s'", head, queue, kind);
    return rt_query_long(t->conn, sql);
}

/* rhino_<what>_total{queue,kind} against the database, per pair. */
static int
counters_match(mt_t *t, const char *body, const char *queue, const char *kind, int verbose)
{
    static const struct {
        const char *metric, *sql;
    } checks[] = {
        { "rhino_jobs_completed_total",
          "SELECT count(*) FROM rhino.jobs_done WHERE state = 'completed' AND" },
        { "rhino_jobs_discarded_total",
          "SELECT count(*) FROM rhino.jobs_done WHERE state = 'discarded' AND" },
        /* errors counts failed runs, the one that discarded a job included */
        { "rhino_jobs_retried_total",
          "SELECT coalesce(sum(errors - (state = 'discarded')::int), 0) FROM rhino.jobs_done WHERE" },
        { "rhino_jobs_claimed_total",
          "SELECT coalesce(sum(attempt), 0) FROM rhino.jobs_done WHERE" },
        /* nothing was rescued here, so nothing can be stale */
        { "rhino_finalizes_stale_total", "SELECT count(*) FROM rhino.jobs_done WHERE false AND" },
    };
    int ok = 1;

    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        char   series[256];
        double got;
        long   want = q(t, checks[i].sql, queue, kind);

        snprintf(series, sizeof(series), "%s{queue=\"%s\",kind=\"%s\"}", checks[i].metric, queue, kind);
        got = metric(body, series);
        if (got != (double) want) {
            if (verbose)
                fprintf(stderr, "%s = %.0f, the database says %ld\n", series, got, want);
            ok = 0;
        }
    }
    return ok;
}

static void
check_histogram(const char *body, const char *name, double want_count)
{
    char   series[256];
    double prev = 0, inf, count, sum;
    int    nb = 0;
    const char *p = body;

    snprintf(series, sizeof(series), "%s_bucket{le=\"", name);
    while ((p = strstr(p, series)) != NULL) {
        double v = strtod(strchr(p, ' ') + 1, NULL);
        ck_assert_msg(v >= prev, "%s buckets are not cumulative", name);
        prev = v;
        nb++;
        p++;
    }
    ck_assert_msg(nb >= 2, "%s has %d buckets", name, nb);
    snprintf(series, sizeof(series), "%s_bucket{le=\"+Inf\"}", name);
    inf = metric(body, series);
    snprintf(series, sizeof(series), "%s_count", name);
    count = metric(body, series);
    snprintf(series, sizeof(series), "%s_sum", name);
    sum = metric(body, series);
    ck_assert_msg(inf == count && inf == prev, "%s: +Inf bucket %.0f, _count %.0f, last bucket %.0f", name, inf,
                  count, prev);
    ck_assert_msg(sum >= 0, "%s_sum missing", name);
    if (want_count >= 0)
        ck_assert_msg(count == want_count, "%s_count = %.0f, expected %.0f", name, count, want_count);
    else
        ck_assert_msg(count > 0, "%s_count is 0", name);
}

/* ---------------------------------------------------------------------- */

/* Every metric a scrape shows (its "# TYPE" line) has a row in the README's table. */
static void
every_metric_documented(const char *body)
{
    char        path[4096], name[128], needle[160], *readme;
    const char *p = body;

    snprintf(path, sizeof(path), "%s/../README.md", rt_env("RHINO_TEST_SRCDIR"));
    readme = rt_read_file(path);
    ck_assert_ptr_nonnull(readme);
    while ((p = strstr(p, "# TYPE ")) != NULL) {
        p += 7;
        ck_assert_int_eq(sscanf(p, "%127s", name), 1);
        snprintf(needle, sizeof(needle), "`%s`", name);
        if (strstr(readme, needle) == NULL) {
            snprintf(needle, sizeof(needle), "`%s{", name);
            ck_assert_msg(strstr(readme, needle) != NULL, "the metric %s has no row in the README's table", name);
        }
    }
    free(readme);
}

START_TEST(test_counters_match_the_database)
{
    mt_t   t;
    char  *body = NULL;
    int    samples, ok = 0;
    double deadline, claimed;
    static const char *const pairs[][2] = {
        { "default", "ok" }, { "default", "retry_twice" }, { "default", "discard" }, { "mail", "ok" },
    };

    mt_setup(&t, NULL);
    rt_exec(t.conn, "SELECT rhino.enqueue('ok', jsonb_build_object('i', g)) FROM generate_series(1, 600) g");
    rt_exec(t.conn, "SELECT rhino.enqueue('retry_twice') FROM generate_series(1, 60)");
    rt_exec(t.conn, "SELECT rhino.enqueue('discard') FROM generate_series(1, 40)");
    rt_exec(t.conn, "SELECT rhino.enqueue('ok', queue => 'mail') FROM generate_series(1, 30)");
    /* a queue nobody serves: its depth and age show up as gauges */
    rt_exec(t.conn, "SELECT rhino.enqueue('ok', queue => 'nobody') FROM generate_series(1, 7)");
    mt_start(&t);
    if (!rt_wait_sql(t.conn, "SELECT count(*) = 730 FROM rhino.jobs_done", 60)) {
        dump_log(&t);
        ck_abort_msg("the jobs did not finish");
    }

    /* the worker counts once it has seen the commit: allow it a moment */
    deadline = rt_now() + 10;
    while (!ok) {
        free(body);
        body = scrape(&t);
        ok = 1;
        for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
            ok &= counters_match(&t, body, pairs[i][0], pairs[i][1], rt_now() >= deadline);
        ok &= metric(body, "rhino_queue_depth{queue=\"nobody\"}") == 7;
        ok &= metric(body, "rhino_queue_depth{queue=\"default\"}") == 0;
        if (!ok && rt_now() >= deadline) {
            fprintf(stderr, "%s", body);
            ck_abort_msg("the metrics do not match the database (see above)");
        }
        if (!ok)
            usleep(200 * 1000);
    }

    samples = check_format(body);
    ck_assert_int_gt(samples, 40);
    /* every claimed job ran its handler exactly once here (no drains, no crashes) */
    claimed = 0;
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        char series[256];
        snprintf(series, sizeof(series), "rhino_jobs_claimed_total{queue=\"%s\",kind=\"%s\"}", pairs[i][0], pairs[i][1]);
        claimed += metric(body, series);
    }
    ck_assert_msg(claimed == 600 + 3 * 60 + 40 + 30, "claimed %.0f", claimed);
    check_histogram(body, "rhino_job_duration_seconds", claimed);
    check_histogram(body, "rhino_claim_duration_seconds", -1);
    check_histogram(body, "rhino_finalize_duration_seconds", -1);
    ck_assert(metric(body, "rhino_queue_oldest_age_seconds{queue=\"nobody\"}") > 0);
    /* counted on the reaper's second connection, so that a long count never holds up a pass */
    ck_assert_int_eq(rt_query_long(t.conn, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                           " AND application_name = 'rhino reaper gauges'"), 1);
    ck_assert(metric(body, "rhino_workers_configured") == 3);
    ck_assert(metric(body, "rhino_workers_alive") == 3);
    ck_assert(metric(body, "rhino_workers_ready") == 3);
    ck_assert(metric(body, "rhino_reaper_up") == 1);
    ck_assert(metric(body, "rhino_restarts_total") == 0);
    ck_assert(metric(body, "rhino_crashes_total") == 0);
    every_metric_documented(body);

    /* anything but /metrics is a 404; the daemon is unaffected */
    {
        char *resp = http_get(t.port, "/");
        ck_assert_ptr_nonnull(resp);
        ck_assert_msg(strncmp(resp + 8, " 404", 4) == 0, "GET / answered:\n%.200s", resp);
        free(resp);
    }
    free(body);

    /* a worker killed: restarts counted, and the replacement shows up */
    {
        char *pid = rt_query1(t.conn, "SELECT pid FROM rhino.workers WHERE ended_at IS NULL ORDER BY id LIMIT 1");
        ck_assert_ptr_nonnull(pid);
        kill((pid_t) atoi(pid), SIGKILL);
        free(pid);
        t.allow_errors = 1;     /* the master logs the death as an error */
        deadline = rt_now() + 10;
        for (;;) {
            body = scrape(&t);
            if (metric(body, "rhino_restarts_total") == 1 && metric(body, "rhino_workers_ready") == 3)
                break;
            ck_assert_msg(rt_now() < deadline, "no restart counted:\n%s", body);
            free(body);
            usleep(100 * 1000);
        }
        free(body);
    }

    mt_stop(&t);
}
END_TEST

/*
 * [metrics] depth_limit: the depth gauge counts up to the limit per queue
 * (so that its cost does not grow with the backlog) and says the limit, and
 * the oldest job's age is that of the queue's oldest job whatever its
 * priority (the count stops early in the index, the age must not).
 */
START_TEST(test_depth_limit)
{
    mt_t  t;
    char *body = NULL;
    FILE *f;
    double deadline;

    mt_setup(&t, NULL);
    f = fopen(t.ini, "a");      /* [metrics] is the file's last section */
    ck_assert_ptr_nonnull(f);
    fputs("depth_limit = 50\n", f);
    fclose(f);
    /* queues nobody serves, so the gauges hold still */
    rt_exec(t.conn, "SELECT rhino.enqueue('ok', queue => 'big') FROM generate_series(1, 100)");
    rt_exec(t.conn, "SELECT rhino.enqueue('ok', queue => 'big', priority => 5, run_at => now() - interval '1 hour')"
                    "  FROM generate_series(1, 20)");
    rt_exec(t.conn, "SELECT rhino.enqueue('ok', queue => 'small', priority => 2) FROM generate_series(1, 3)");
    rt_exec(t.conn, "SELECT rhino.enqueue('ok', queue => 'small', run_at => now() + interval '1 hour')");
    mt_start(&t);
    deadline = rt_now() + 20;
    for (;;) {
        body = scrape(&t);
        if (strstr(body, "rhino_queue_depth{queue=\"big\"}") != NULL)
            break;
        ck_assert_msg(rt_now() < deadline, "no depth gauge for queue big:\n%s", body);
        free(body);
        usleep(100 * 1000);
    }
    ck_assert_msg(metric(body, "rhino_queue_depth{queue=\"big\"}") == 50, "%s", body);
    ck_assert_msg(metric(body, "rhino_queue_depth{queue=\"small\"}") == 3, "%s", body);
    ck_assert_msg(metric(body, "rhino_queue_depth{queue=\"default\"}") == 0, "%s", body);
    ck_assert_msg(metric(body, "rhino_queue_depth_limit") == 50, "%s", body);
    ck_assert_msg(metric(body, "rhino_queue_oldest_age_seconds{queue=\"big\"}") >= 3600, "%s", body);
    ck_assert_msg(metric(body, "rhino_queue_oldest_age_seconds{queue=\"small\"}") < 600, "%s", body);
    free(body);
    mt_stop(&t);
}
END_TEST

/* How many sockets process pid holds open (its /proc/pid/fd links "socket:[...]"). */
static int
count_sockets(pid_t pid)
{
    char path[64], link[128];
    int  n = 0;

    for (int fd = 0; fd < 1024; fd++) {
        ssize_t len;

        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int) pid, fd);
        len = readlink(path, link, sizeof(link) - 1);
        if (len <= 0)
            continue;
        link[len] = '\0';
        if (strncmp(link, "socket:", 7) == 0)
            n++;
    }
    return n;
}

/*
 * A connection to the master's endpoint whose request is not complete yet,
 * so the master holds it open: its fd (the caller closes it).
 */
static int
half_request(const mt_t *t)
{
    struct sockaddr_in a = { 0 };
    int                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t) t->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *) &a, sizeof(a)), 0);
    ck_assert_int_eq(write(fd, "GET /metrics HTTP/1.1\r\n", 23), 23);
    usleep(300 * 1000);         /* accepted by now */
    return fd;
}

/*
 * A worker forked while a scraper holds a connection open does not inherit
 * its socket: it had kept the connection open for its whole life, after
 * the master had closed its own side.  A worker has one socket: its
 * database connection.
 */
START_TEST(test_children_hold_no_scrape_socket)
{
    mt_t               t;
    char              *body;
    int                fd;
    long               old_pid, new_pid;
    char               sql[160];

    mt_setup(&t, NULL);
    mt_start(&t);
    body = scrape(&t);          /* up and serving */
    free(body);
    ck_assert(rt_wait_sql(t.conn, "SELECT count(*) = 3 FROM rhino.workers WHERE ended_at IS NULL", 20));
    fd = half_request(&t);
    /* a worker dies; the master forks its successor while the connection is open */
    old_pid = rt_query_long(t.conn, "SELECT pid FROM rhino.workers WHERE ended_at IS NULL AND slot = 0");
    kill((pid_t) old_pid, SIGKILL);
    snprintf(sql, sizeof(sql), "SELECT count(*) = 1 FROM rhino.workers WHERE ended_at IS NULL AND slot = 0"
                               " AND pid <> %ld", old_pid);
    ck_assert(rt_wait_sql(t.conn, sql, 20));
    new_pid = rt_query_long(t.conn, "SELECT pid FROM rhino.workers WHERE ended_at IS NULL AND slot = 0");
    ck_assert_int_eq(count_sockets((pid_t) new_pid), 1);
    close(fd);
    t.allow_errors = 1;         /* the killed worker is logged as an error */
    mt_stop(&t);
}
END_TEST

/* A handler library whose constructor blocks (a lookup that hangs, say), so that a reload's check lasts. */
static const char slow_ctor_src[] =
    "#include <unistd.h>\n"
    "__attribute__((constructor)) static void slow(void) { sleep(30); }\n";

/* Whether process pid has mapped a file whose path contains name (/proc/pid/maps). */
static int
maps_contain(pid_t pid, const char *name)
{
    char  path[64], *maps;
    int   found;

    snprintf(path, sizeof(path), "/proc/%d/maps", (int) pid);
    maps = rt_read_file(path);
    found = maps != NULL && strstr(maps, name) != NULL;
    free(maps);
    return found;
}

/*
 * Neither does the child a reload forks to check the new handlers, which
 * lives up to [handlers] load_timeout beside the master: it held the
 * metrics listening socket, the scrapers' connections and the LISTEN
 * connection's socket all that time.  It opens nothing of its own, so it
 * holds no socket at all.  It is seen while it runs the constructor that
 * blocks: that library is mapped by then, after the fork's clean-up.
 */
START_TEST(test_handler_check_holds_no_master_socket)
{
    mt_t               t;
    char              *body, *so = rt_build_so("slow_ctor.so", slow_ctor_src), ini[8192];
    pid_t              before[16], after[16], check = 0;
    int                fd, nbefore, nafter;
    FILE              *f;
    double             t0;

    mt_setup(&t, NULL);
    mt_start(&t);
    body = scrape(&t);
    free(body);
    ck_assert(rt_wait_sql(t.conn, "SELECT count(*) = 3 FROM rhino.workers WHERE ended_at IS NULL", 20));
    ck_assert(rt_wait_sql(t.conn, "SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = current_database()"
                                  " AND application_name = 'rhino listener'", 20));
    fd = half_request(&t);

    nbefore = rt_children_of(t.pid, before, 16);
    snprintf(ini, sizeof(ini),
             "[worker]\nprocesses = 3\nbatch_size = 50\npoll_interval = 0.05\nqueues = default, mail\n"
             "[handlers]\npath = %s, %s\nload_timeout = 60\n"
             "[retry]\nbase_delay = 0.05\nmax_delay = 0.1\n"
             "[reaper]\ninterval = 0.1\n"
             "[metrics]\nlisten = 127.0.0.1:%d\n", rt_handlers_so(), so, t.port);
    f = fopen(t.ini, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(ini, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    kill(t.pid, SIGHUP);
    /* the new child under the master, once it is in the constructor */
    for (t0 = rt_now(); check == 0 && rt_now() - t0 < 10; usleep(20 * 1000)) {
        nafter = rt_children_of(t.pid, after, 16);
        for (int i = 0; i < nafter && check == 0; i++) {
            int known = 0;

            for (int j = 0; j < nbefore; j++)
                known |= after[i] == before[j];
            if (!known && maps_contain(after[i], "slow_ctor.so"))
                check = after[i];
        }
    }
    if (check == 0)
        dump_log(&t);
    ck_assert_msg(check > 0, "no child loading slow_ctor.so 10 s after SIGHUP");
    ck_assert_int_eq(count_sockets(check), 0);
    close(fd);
    /* a stop during the check drops the reload, quietly */
    mt_stop(&t);
    free(so);
}
END_TEST

/* A bad address is refused when the configuration is read, naming the key. */
START_TEST(test_bad_listen_is_refused)
{
    static const char *const bad[] = {
        "listen = 127.0.0.1\n", "listen = 127.0.0.1:0\n", "listen = 127.0.0.1:70000\n",
        "listen = example.com:9187\n", "listen = [::1:9187\n", "listen = 300.1.1.1:9187\n",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char  ini[8192], *path, *out = NULL, *err = NULL;
        char *argv[] = { (char *) rt_env("RHINO_BIN"), "-t", "-c", NULL, NULL };
        int   rc;

        snprintf(ini, sizeof(ini), "[handlers]\npath = %s\n[metrics]\n%s", rt_handlers_so(), bad[i]);
        path = rt_write_file("rhino.ini", ini);
        argv[3] = path;
        rc = rt_run(argv, NULL, NULL, &out, &err);
        ck_assert_msg(rc == 1, "%s: rhino -t exited %d", bad[i], rc);
        ck_assert_msg(strstr(err, "[metrics] listen") != NULL, "%s: the error does not name the key:\n%s", bad[i], err);
        free(out);
        free(err);
        free(path);
    }
}
END_TEST

/*
 * An address already in use stops rhino at start with a clear message,
 * and leaves no node that looks alive: the start used to fail only after
 * registering the node, whose row stayed with stopped_at NULL.
 */
START_TEST(test_port_in_use_fails_the_start)
{
    mt_t               t;
    struct sockaddr_in a = { 0 };
    int                fd = socket(AF_INET, SOCK_STREAM, 0), rc;
    char              *log;

    mt_setup(&t, NULL);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t) t.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
    ck_assert_int_eq(listen(fd, 1), 0);
    mt_start(&t);
    rc = rt_wait_exit(t.pid, 20);
    t.pid = 0;
    close(fd);
    log = rt_read_file(t.log);
    ck_assert_msg(rc == 1, "rhino exited %d with its metrics port taken:\n%s", rc, log ? log : "");
    ck_assert_msg(log && strstr(log, "cannot serve metrics on") && strstr(log, "in use"), "unclear error:\n%s",
                  log ? log : "");
    free(log);
    ck_assert_int_eq(rt_query_long(t.conn, "SELECT count(*) FROM rhino.nodes WHERE stopped_at IS NULL"), 0);
    t.allow_errors = 1;
    mt_teardown(&t);
}
END_TEST

/* Built without libmicrohttpd: the key is refused at start, saying why. */
START_TEST(test_without_microhttpd_is_refused)
{
    char  ini[8192], *path, *out = NULL, *err = NULL;
    char *argv[] = { (char *) rt_env("RHINO_BIN"), "-t", "-c", NULL, NULL };

    snprintf(ini, sizeof(ini), "[handlers]\npath = %s\n[metrics]\nlisten = 127.0.0.1:9187\n", rt_handlers_so());
    path = rt_write_file("rhino.ini", ini);
    argv[3] = path;
    ck_assert_int_eq(rt_run(argv, NULL, NULL, &out, &err), 1);
    ck_assert_msg(strstr(err, "built without libmicrohttpd") != NULL, "unclear error:\n%s", err);
    free(out);
    free(err);
    free(path);
}
END_TEST

/*
 * rh_metrics_key: one entry per (queue, kind), names cut to RH_METRIC_NAME - 1
 * bytes as the table stores them, whatever order the pairs come in (the
 * worker remembers its last pair; the answer must not depend on that).
 */
START_TEST(test_metric_keys)
{
    rh_metrics_t *saved = rh_metrics, *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    char          long1[200], long2[200];
    int           k1, k2, k3, k4, k5;

    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    memset(long1, 'q', sizeof(long1) - 1);
    long1[sizeof(long1) - 1] = '\0';
    memcpy(long2, long1, sizeof(long2));
    long2[150] = 'x';                       /* differs only past the stored length */

    rh_metrics = a;
    k1 = rh_metrics_key("default", "ok");
    k2 = rh_metrics_key("default", "okay");
    k3 = rh_metrics_key("defaul", "tok");
    ck_assert_int_ge(k1, 0);
    ck_assert_int_ne(k1, k2);
    ck_assert_int_ne(k1, k3);
    ck_assert_int_ne(k2, k3);
    ck_assert_int_eq(rh_metrics_key("default", "ok"), k1);
    ck_assert_int_eq(rh_metrics_key("default", "ok"), k1);
    ck_assert_int_eq(rh_metrics_key("default", "okay"), k2);
    ck_assert_int_eq(rh_metrics_key("default", "o"), rh_metrics_key("default", "o"));
    ck_assert_int_ne(rh_metrics_key("default", "o"), k1);
    ck_assert_int_eq(rh_metrics_key(NULL, NULL), rh_metrics_key("", ""));

    k4 = rh_metrics_key(long1, "ok");
    ck_assert_int_ge(k4, 0);
    ck_assert_int_eq(rh_metrics_key(long2, "ok"), k4);
    ck_assert_uint_eq(strlen(a->keys[k4].queue), RH_METRIC_NAME - 1);
    long2[20] = 'x';
    ck_assert_int_ne(rh_metrics_key(long2, "ok"), k4);
    ck_assert_str_eq(a->keys[k1].queue, "default");
    ck_assert_str_eq(a->keys[k1].kind, "ok");

    /* another table (the pointer a worker inherits is the master's): nothing carried over */
    rh_metrics = b;
    k5 = rh_metrics_key("default", "ok");
    ck_assert_int_ge(k5, 0);
    ck_assert_str_eq(b->keys[k5].kind, "ok");
    ck_assert_int_eq(b->keys[k5].state, 2);

    rh_metrics = saved;
    free(a);
    free(b);
}
END_TEST

static Suite *
metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("prometheus");

    tcase_set_timeout(tc, 120);
#ifdef HAVE_LIBMICROHTTPD
    (void) test_without_microhttpd_is_refused;
    tcase_add_test(tc, test_counters_match_the_database);
    tcase_add_test(tc, test_depth_limit);
    tcase_add_test(tc, test_children_hold_no_scrape_socket);
    tcase_add_test(tc, test_handler_check_holds_no_master_socket);
    tcase_add_test(tc, test_bad_listen_is_refused);
    tcase_add_test(tc, test_port_in_use_fails_the_start);
#else
    (void) test_counters_match_the_database;
    (void) test_children_hold_no_scrape_socket;
    (void) test_handler_check_holds_no_master_socket;
    (void) test_depth_limit;
    (void) test_bad_listen_is_refused;
    (void) test_port_in_use_fails_the_start;
    tcase_add_test(tc, test_without_microhttpd_is_refused);
#endif
    suite_add_tcase(s, tc);
    tc = tcase_create("keys");
    tcase_add_test(tc, test_metric_keys);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    int      failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
