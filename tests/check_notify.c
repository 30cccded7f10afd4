/*
 * check_notify.c - rhino under a service manager: the sd_notify messages it
 * sends.  The test plays systemd: it binds a unix datagram socket, starts
 * rhino with NOTIFY_SOCKET (and WATCHDOG_USEC) pointing at it, and reads
 * what arrives across a start, a SIGHUP roll and a SIGTERM stop.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "rh_testlib.h"

#define MAX_MSGS 4096

typedef struct {
    char   *dsn;
    PGconn *conn;
    char   *ini;
    char    log[4096];
    char    sock[4096];
    char    env_dsn[4200];
    char    env_sock[4200];
    int     fd;
    pid_t   pid;
    char   *msgs[MAX_MSGS];
    double  at[MAX_MSGS];
    int     n;
    int     allow_errors;   /* the test provokes an error on purpose */
} nt_t;

static void
nt_setup(nt_t *t)
{
    char               ini[8192];
    struct sockaddr_un a;
    char              *slash;

    memset(t, 0, sizeof(*t));
    t->dsn = rt_db_create_migrated();
    t->conn = rt_connect(t->dsn);
    snprintf(ini, sizeof(ini),
             "[worker]\nprocesses = 2\nbatch_size = 100\npoll_interval = 0.05\n"
             "[handlers]\npath = %s\n"
             "[retry]\nbase_delay = 0.05\nmax_delay = 0.2\n"
             "[reaper]\ninterval = 0.1\n"
             "[master]\nshutdown_timeout = 20\n", rt_handlers_so());
    t->ini = rt_write_file("rhino.ini", ini);
    snprintf(t->log, sizeof(t->log), "%s", t->ini);
    slash = strrchr(t->log, '/');
    strcpy(slash + 1, "rhino.log");
    snprintf(t->sock, sizeof(t->sock), "%s", t->ini);
    slash = strrchr(t->sock, '/');
    strcpy(slash + 1, "notify.sock");
    ck_assert_msg(strlen(t->sock) < sizeof(a.sun_path), "socket path too long: %s", t->sock);

    t->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(t->fd, 0);
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, t->sock);
    ck_assert_msg(bind(t->fd, (struct sockaddr *) &a, sizeof(a)) == 0, "bind(%s): %s", t->sock, strerror(errno));
    snprintf(t->env_dsn, sizeof(t->env_dsn), "RHINO_DSN=%s", t->dsn);
    snprintf(t->env_sock, sizeof(t->env_sock), "NOTIFY_SOCKET=%s", t->sock);
}

static void
nt_start(nt_t *t, const char *watchdog_pid)
{
    char *argv[] = { (char *) rt_env("RHINO_BIN"), "-c", t->ini, NULL };
    /* a bare name removes the variable (rh_testlib build_env) */
    char *env[] = { t->env_dsn, t->env_sock, "WATCHDOG_USEC=2000000", (char *) watchdog_pid, NULL };

    t->pid = rt_spawn(argv, env, t->log);
    ck_assert_int_gt(t->pid, 0);
}

static void
dump(nt_t *t)
{
    char *log = rt_read_file(t->log);

    fprintf(stderr, "---- notify messages ----\n");
    for (int i = 0; i < t->n; i++)
        fprintf(stderr, "[%d] +%.2f %s\n", i, t->at[i] - t->at[0], t->msgs[i]);
    fprintf(stderr, "---- rhino log ----\n%s-------------------\n", log ? log : "(none)");
    free(log);
}

/* Read every datagram that arrives within `timeout` seconds (at least one poll). */
static void
nt_read(nt_t *t, double timeout)
{
    double deadline = rt_now() + timeout;

    for (;;) {
        struct pollfd p = { t->fd, POLLIN, 0 };
        double        left = deadline - rt_now();
        char          buf[4096];
        ssize_t       n;

        if (poll(&p, 1, left > 0 ? (int) (left * 1000) : 0) <= 0)
            return;
        n = recv(t->fd, buf, sizeof(buf) - 1, 0);
        if (n < 0)
            continue;
        buf[n] = '\0';
        ck_assert_int_lt(t->n, MAX_MSGS);
        t->msgs[t->n] = strdup(buf);
        t->at[t->n] = rt_now();
        t->n++;
    }
}

/* Does message i carry the assignment line `kv` ("READY=1")? */
static int
has_line(const char *msg, const char *kv)
{
    size_t      len = strlen(kv);
    const char *p = msg;

    while ((p = strstr(p, kv)) != NULL) {
        if ((p == msg || p[-1] == '\n') && (p[len] == '\0' || p[len] == '\n'))
            return 1;
        p += len;
    }
    return 0;
}

/* The index of the first message from `from` on with line kv (prefix match when kv ends in '='). */
static int
find(nt_t *t, int from, const char *kv)
{
    size_t len = strlen(kv);

    for (int i = from; i < t->n; i++) {
        if (kv[len - 1] == '=') {
            const char *p = strstr(t->msgs[i], kv);
            if (p && (p == t->msgs[i] || p[-1] == '\n'))
                return i;
        } else if (has_line(t->msgs[i], kv)) {
            return i;
        }
    }
    return -1;
}

/* Read until a message from `from` on carries kv, or fail after timeout. */
static int
wait_for(nt_t *t, int from, const char *kv, double timeout)
{
    double deadline = rt_now() + timeout;
    int    i;

    while ((i = find(t, from, kv)) < 0 && rt_now() < deadline)
        nt_read(t, 0.1);
    if (i < 0) {
        dump(t);
        ck_abort_msg("no \"%s\" from rhino within %.0f s (after message %d)", kv, timeout, from);
    }
    return i;
}

static void
nt_teardown(nt_t *t)
{
    if (t->pid > 0) {
        kill(t->pid, SIGKILL);
        rt_wait_exit(t->pid, 5);
    }
    close(t->fd);
    PQfinish(t->conn);
    free(t->dsn);
    free(t->ini);
    rt_check_log(t->log, NULL, t->allow_errors);
    for (int i = 0; i < t->n; i++)
        free(t->msgs[i]);
}

/* ---------------------------------------------------------------------- */

START_TEST(test_ready_reload_stop_watchdog)
{
    nt_t  t;
    int   status, ready, wd, reloading, ready2, stopping, rc;
    char *log, *mono;

    nt_setup(&t);
    rt_exec(t.conn, "SELECT rhino.enqueue('ok') FROM generate_series(1, 200)");
    nt_start(&t, "WATCHDOG_PID");

    /* start: a STATUS line first, then READY=1 once every child is connected */
    ready = wait_for(&t, 0, "READY=1", 30);
    status = find(&t, 0, "STATUS=");
    ck_assert_msg(status >= 0 && status < ready, "no STATUS= before READY=1");
    /* registration commits before a worker reports itself ready */
    ck_assert_int_eq(rt_query_long(t.conn, "SELECT count(*) FROM rhino.workers WHERE ended_at IS NULL"), 2);
    ck_assert_int_eq(find(&t, 0, "STOPPING=1"), -1);
    ck_assert_int_eq(find(&t, 0, "RELOADING=1"), -1);

    /* the watchdog: WATCHDOG_USEC=2 s, so a ping at least every second */
    wd = wait_for(&t, ready, "WATCHDOG=1", 3);
    wait_for(&t, wd + 1, "WATCHDOG=1", 2);
    ck_assert_int_eq(rt_wait_sql(t.conn, "SELECT count(*) = 200 FROM rhino.jobs_done", 30), 1);
    /* a STATUS line people can read */
    nt_read(&t, 1.2);
    {
        int s = ready;
        int found = 0;
        while ((s = find(&t, s + 1, "STATUS=")) >= 0)
            if (strstr(t.msgs[s], "workers 2/2") && strstr(t.msgs[s], "jobs/s") && strstr(t.msgs[s], "restarts"))
                found = 1;
        if (!found)
            dump(&t);
        ck_assert_msg(found, "no STATUS=workers 2/2, N jobs/s, N restarts after READY=1");
    }

    /* SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 once the roll is done */
    kill(t.pid, SIGHUP);
    reloading = wait_for(&t, 0, "RELOADING=1", 10);
    mono = strstr(t.msgs[reloading], "MONOTONIC_USEC=");
    ck_assert_msg(mono != NULL && strtoull(mono + 15, NULL, 10) > 0, "RELOADING=1 without MONOTONIC_USEC: %s",
                  t.msgs[reloading]);
    ready2 = wait_for(&t, reloading + 1, "READY=1", 30);
    ck_assert_int_gt(ready2, reloading);
    log = rt_read_file(t.log);
    ck_assert_msg(log && strstr(log, "reload done"), "READY=1 before the roll was done:\n%s", log ? log : "");
    free(log);
    /* pings go on after the reload */
    wait_for(&t, ready2 + 1, "WATCHDOG=1", 3);

    /* SIGTERM: STOPPING=1 at the start of the stop */
    kill(t.pid, SIGTERM);
    stopping = wait_for(&t, ready2 + 1, "STOPPING=1", 10);
    ck_assert_int_gt(stopping, ready2);
    rc = rt_wait_exit(t.pid, 30);
    if (rc != 0)
        dump(&t);
    ck_assert_int_eq(rc, 0);
    t.pid = 0;
    nt_read(&t, 0.1);
    ck_assert_msg(find(&t, stopping + 1, "READY=1") < 0, "READY=1 after STOPPING=1");
    nt_teardown(&t);
}
END_TEST

/* sd_watchdog_enabled(): WATCHDOG_PID names another process, so the watchdog is not ours. */
START_TEST(test_watchdog_pid_of_another_process)
{
    nt_t t;
    int  ready;

    nt_setup(&t);
    nt_start(&t, "WATCHDOG_PID=1");
    ready = wait_for(&t, 0, "READY=1", 30);
    nt_read(&t, 2.5);
    if (find(&t, 0, "WATCHDOG=1") >= 0)
        dump(&t);
    ck_assert_msg(find(&t, 0, "WATCHDOG=1") < 0, "WATCHDOG=1 although WATCHDOG_PID is not rhino's");
    ck_assert_int_ge(ready, 0);
    kill(t.pid, SIGTERM);
    ck_assert_int_eq(rt_wait_exit(t.pid, 30), 0);
    t.pid = 0;
    nt_teardown(&t);
}
END_TEST

/*
 * The roll is one slot at a time and an old worker first finishes the job
 * in its hand, so a reload's READY=1 waits for that job: what
 * etc/rhino.service's TimeoutStartSec is sized for (systemd bounds the
 * reloading state by it).  A 3 s job in hand: READY=1 comes after it
 * completed, not before.
 */
START_TEST(test_reload_ready_waits_for_the_job_in_hand)
{
    nt_t t;
    int  reloading, ready;

    nt_setup(&t);
    nt_start(&t, "WATCHDOG_PID");
    wait_for(&t, 0, "READY=1", 30);
    rt_exec(t.conn, "SELECT rhino.enqueue('ok', '{\"ms\": 3000}')");
    ck_assert_int_eq(rt_wait_sql(t.conn, "SELECT count(*) = 1 FROM rhino.jobs WHERE state = 'running'", 10), 1);
    kill(t.pid, SIGHUP);
    reloading = wait_for(&t, 0, "RELOADING=1", 10);
    ready = wait_for(&t, reloading + 1, "READY=1", 30);
    ck_assert_msg(t.at[ready] - t.at[reloading] > 1.5, "READY=1 %.2f s after RELOADING=1, with a 3 s job in hand",
                  t.at[ready] - t.at[reloading]);
    ck_assert_int_eq(rt_query_long(t.conn, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'completed'"), 1);
    kill(t.pid, SIGTERM);
    ck_assert_int_eq(rt_wait_exit(t.pid, 30), 0);
    t.pid = 0;
    nt_teardown(&t);
}
END_TEST

/* A reload that fails still answers RELOADING=1 with READY=1: the old configuration runs on. */
START_TEST(test_failed_reload_is_ready_again)
{
    nt_t  t;
    int   reloading;
    FILE *f;

    nt_setup(&t);
    nt_start(&t, "WATCHDOG_PID");
    wait_for(&t, 0, "READY=1", 30);
    f = fopen(t.ini, "a");
    ck_assert_ptr_nonnull(f);
    fputs("[worker]\nbatch_size = many\n", f);
    fclose(f);
    kill(t.pid, SIGHUP);
    reloading = wait_for(&t, 0, "RELOADING=1", 10);
    wait_for(&t, reloading + 1, "READY=1", 5);
    kill(t.pid, SIGTERM);
    ck_assert_int_eq(rt_wait_exit(t.pid, 30), 0);
    t.pid = 0;
    /* the bad reload logs an error on purpose */
    {
        char *log = rt_read_file(t.log);
        ck_assert_msg(log && strstr(log, "reload failed"), "no \"reload failed\" in the log");
        free(log);
        t.allow_errors = 1;
    }
    nt_teardown(&t);
}
END_TEST

static Suite *
notify_suite(void)
{
    Suite *s = suite_create("notify");
    TCase *tc = tcase_create("sd_notify");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_ready_reload_stop_watchdog);
    tcase_add_test(tc, test_watchdog_pid_of_another_process);
    tcase_add_test(tc, test_failed_reload_is_ready_again);
    tcase_add_test(tc, test_reload_ready_waits_for_the_job_in_hand);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(notify_suite());
    int      failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
