/*
 * check_schedule.c - periodic jobs against a real PostgreSQL: the schedule
 * functions and rhino.cron_check() (which must agree with the C parser),
 * exactly-once firing from concurrent connections, the missed-fire
 * policies, config schedules, rhinoctl schedule/schedules/unschedule, and
 * real rhino daemons (one, then two on one database) enqueueing and running
 * scheduled jobs.
 *
 * Firing takes "now" as a parameter (rh_schedule_tick), so the tests set a
 * schedule's fired_until and pass a time instead of waiting for wall-clock
 * minutes; the daemon tests backdate fired_until, as a downtime would.
 */
#include "config.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "rh_config.h"
#include "rh_cron.h"
#include "rh_schedule.h"
#include "rh_testlib.h"
#include "cron_cases.h"

/* ---- helpers ------------------------------------------------------------------ */

/* Run sql with params; assert success; the first value (malloc'd; NULL if none or SQL NULL). */
static char *
qp(PGconn *conn, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    char     *v = NULL;

    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK,
                  "%s: %s", sql, PQresultErrorMessage(res));
    if (PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0))
        v = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

/* The primary message of the error sql raises with one parameter (malloc'd); fails if it succeeds. */
static char *
qerr(PGconn *conn, const char *sql, const char *param, char *sqlstate, size_t sslen)
{
    const char *p[1] = { param };
    PGresult   *res = PQexecParams(conn, sql, param ? 1 : 0, NULL, param ? p : NULL, NULL, NULL, 0);
    char       *msg;

    ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "%s (%s) succeeded", sql, param ? param : "");
    msg = strdup(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    if (sqlstate)
        snprintf(sqlstate, sslen, "%s", PQresultErrorField(res, PG_DIAG_SQLSTATE));
    PQclear(res);
    return msg;
}

static void
assert_q(PGconn *conn, const char *sql, const char *want)
{
    char *v = rt_query1(conn, sql);

    ck_assert_msg(v != NULL && strcmp(v, want) == 0, "%s\n got  %s\n want %s", sql, v ? v : "(null)", want);
    free(v);
}

static int
tick(PGconn *conn, const char *now)
{
    int n = rh_schedule_tick(conn, now);

    ck_assert_msg(n >= 0, "rh_schedule_tick failed: %s", PQerrorMessage(conn));
    return n;
}

/* A schedule "s" of cron expr and policy, whose fire times up to FROM are done; due at once. */
static void
make_schedule(PGconn *conn, const char *name, const char *cron, const char *missed, const char *from)
{
    const char *p[4] = { name, cron, missed, from };
    char       *v;

    v = qp(conn, "SELECT rhino.schedule($1, $2, 'ok', jsonb_build_object('s', $1::text), missed => $3)", 3, p);
    free(v);
    v = qp(conn, "UPDATE rhino.schedules SET fired_until = $2::timestamptz, next_fire_at = NULL WHERE name = $1",
           2, (const char *const[]){ name, from });
    free(v);
}

/* ---- rhino.cron_check() and the C parser agree ------------------------------------ */

static void
compare_parsers(PGconn *conn, const char *expr)
{
    rh_cron_t   c;
    char        err[1024] = "";
    const char *p[1] = { expr };
    int         c_ok = rh_cron_parse(expr, &c, err, sizeof(err)) == 0;
    PGresult   *res = PQexecParams(conn, "SELECT rhino.cron_check($1)", 1, NULL, p, NULL, NULL, 0);
    int         sql_ok = PQresultStatus(res) == PGRES_TUPLES_OK;

    ck_assert_msg(c_ok == sql_ok, "\"%s\": C %s, SQL %s (%s%s)", expr, c_ok ? "accepts" : "refuses",
                  sql_ok ? "accepts" : "refuses", err, sql_ok ? "" : PQresultErrorMessage(res));
    if (!c_ok) {
        ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22023");
        ck_assert_msg(strcmp(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY), err) == 0,
                      "\"%s\":\n C   %s\n SQL %s", expr, err, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    }
    PQclear(res);
}

START_TEST(test_sql_agrees_with_c)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);
    static const char *const items[] = {
        "*", "*/5", "*/0", "*/x", "0", "7", "13", "24", "31", "59", "60", "1-5", "5-1", "0-59/15", "3/7",
        "jan", "DEC", "feb-apr", "sun", "Sat", "mon-fri", "fri-mon", "sun/2", "x", "", "?", "1-", "-1", "/2",
        "1-2-3", "1//2", "**", "L", "1-5/0", "007", "00000000000000000001", "1-31/31", "mon-7",
    };
    const int n = (int) (sizeof(items) / sizeof(items[0]));

    for (size_t i = 0; i < sizeof(rt_cron_bad) / sizeof(rt_cron_bad[0]); i++)
        compare_parsers(conn, rt_cron_bad[i][0]);
    for (size_t i = 0; i < sizeof(rt_cron_good) / sizeof(rt_cron_good[0]); i++)
        compare_parsers(conn, rt_cron_good[i]);

    /* random expressions from a small alphabet of items, lists and field counts */
    srand(4242);
    for (int k = 0; k < 600; k++) {
        char expr[512] = "";
        int  nf = rand() % 10 == 0 ? 4 + rand() % 3 : 5;

        for (int f = 0; f < nf; f++) {
            int nitems = 1 + (rand() % 4 == 0 ? rand() % 3 : 0);

            if (f > 0)
                strcat(expr, rand() % 8 == 0 ? " \t " : " ");
            for (int i = 0; i < nitems; i++) {
                if (i > 0)
                    strcat(expr, ",");
                strcat(expr, items[rand() % n]);
            }
        }
        compare_parsers(conn, expr);
    }
    PQfinish(conn);
    free(dsn);
}
END_TEST

START_TEST(test_schedule_functions)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);
    char   *v, *before, ss[8];

    /* created, then unchanged, then changed */
    assert_q(conn, "SELECT rhino.schedule('r', '0 3 * * *', 'report', '{\"a\": 1}', queue => 'slow')", "created");
    assert_q(conn, "SELECT rhino.schedule('r', '0 3 * * *', 'report', '{\"a\": 1}', queue => 'slow')", "unchanged");
    assert_q(conn, "SELECT cron || ' ' || kind || ' ' || queue || ' ' || payload::text || ' ' || missed || ' ' || "
                   "source || ' ' || priority || ' ' || max_attempts || ' ' || (next_fire_at IS NULL) "
                   "FROM rhino.schedules", "0 3 * * * report slow {\"a\": 1} latest sql 0 25 true");
    /* a changed kind keeps the schedule's place in time; a changed expression starts afresh */
    rt_exec(conn, "UPDATE rhino.schedules SET fired_until = '2001-01-01', next_fire_at = '2001-01-02'");
    assert_q(conn, "SELECT rhino.schedule('r', '0 3 * * *', 'report2', missed => 'all')", "changed");
    assert_q(conn, "SELECT fired_until = '2001-01-01' AND next_fire_at = '2001-01-02' AND kind = 'report2' "
                   "AND missed = 'all' AND queue = 'default' FROM rhino.schedules", "t");
    assert_q(conn, "SELECT rhino.schedule('r', '0 4 * * *', 'report2', missed => 'all')", "changed");
    assert_q(conn, "SELECT fired_until = date_trunc('minute', now()) AND next_fire_at IS NULL FROM rhino.schedules",
             "t");

    /* bad input, each refused with a message naming what is wrong */
    v = qerr(conn, "SELECT rhino.schedule('x', $1, 'k')", "0 0 * * 8", ss, sizeof(ss));
    ck_assert_str_eq(v, "cron expression \"0 0 * * 8\": day-of-week field \"8\": 8 is out of range 0-7");
    ck_assert_str_eq(ss, "22023");
    free(v);
    v = qerr(conn, "SELECT rhino.schedule('x', '@daily', 'k', missed => $1)", "sometimes", NULL, 0);
    ck_assert_str_eq(v, "rhino.schedule x: missed must be latest, all or none, not \"sometimes\"");
    free(v);
    v = qerr(conn, "SELECT rhino.schedule('x', '@daily', $1)", "", NULL, 0);
    ck_assert_str_eq(v, "rhino.schedule x: kind must be 1 to 255 characters long");
    free(v);
    v = qerr(conn, "SELECT rhino.schedule($1, '@daily', 'k')", "", NULL, 0);
    ck_assert_str_eq(v, "rhino.schedule: name must be 1 to 255 characters long");
    free(v);
    v = qerr(conn, "SELECT rhino.schedule('x', '@daily', 'k', max_attempts => 0)", NULL, NULL, 0);
    ck_assert_str_eq(v, "rhino.schedule x: max_attempts must be at least 1");
    free(v);
    v = qerr(conn, "SELECT rhino.schedule('x', '@daily', 'k', timeout => -1)", NULL, NULL, 0);
    ck_assert_str_eq(v, "rhino.schedule x: timeout must be a finite number of seconds above 0 (or NULL), not -1");
    free(v);
    /* NaN sorts above every number: "timeout > 0" alone let it in */
    v = qerr(conn, "SELECT rhino.schedule('x', '@daily', 'k', timeout => 'NaN')", NULL, NULL, 0);
    ck_assert_str_eq(v, "rhino.schedule x: timeout must be a finite number of seconds above 0 (or NULL), not NaN");
    free(v);
    v = qerr(conn, "SELECT rhino.schedule('x', '@daily', 'k', timeout => 'Infinity')", NULL, NULL, 0);
    ck_assert_str_eq(v, "rhino.schedule x: timeout must be a finite number of seconds above 0 (or NULL), not Infinity");
    free(v);
    v = qerr(conn, "SELECT rhino.schedule('x', '@daily', 'k', priority => 99999)", NULL, NULL, 0);
    ck_assert_str_eq(v, "smallint out of range");
    free(v);
    v = qerr(conn, "SELECT rhino.schedule('x', '@daily', 'k', '{bad')", NULL, NULL, 0);
    ck_assert_msg(strstr(v, "json") != NULL, "%s", v);
    free(v);
    /* the table itself refuses an expression written around the function */
    v = qerr(conn, "INSERT INTO rhino.schedules (name, cron, kind) VALUES ('y', $1, 'k')", "* * 30 2 *", NULL, 0);
    ck_assert_str_eq(v, "cron expression \"* * 30 2 *\": day-of-month field \"30\" names no day that month "
                        "field \"2\" has");
    free(v);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schedules"), 1);

    /* unschedule: true once, then false; the fire rows go with it, the jobs stay */
    assert_q(conn, "SELECT rhino.unschedule('r')", "t");
    before = rt_query1(conn, "SELECT rhino.enqueue('unrelated')");
    free(before);
    make_schedule(conn, "m", "* * * * *", "latest", "2030-01-01 00:00+00");
    ck_assert_int_eq(tick(conn, "2030-01-01 00:01:05+00"), 1);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schedule_fires"), 1);
    assert_q(conn, "SELECT rhino.unschedule('m')", "t");
    assert_q(conn, "SELECT rhino.unschedule('m')", "f");
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schedule_fires"), 0);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"), 2);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* ---- firing -------------------------------------------------------------------------- */

START_TEST(test_fire_creates_linked_jobs)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);

    rt_exec(conn, "SELECT rhino.schedule('s', '*/15 * * * *', 'ok', '{\"x\": 1}', queue => 'q', priority => 3,"
                  " max_attempts => 4, timeout => 9, missed => 'all')");
    rt_exec(conn, "UPDATE rhino.schedules SET fired_until = '2030-01-01 00:00+00', next_fire_at = NULL");
    /* not yet due at 00:14:59 */
    ck_assert_int_eq(tick(conn, "2030-01-01 00:14:59+00"), 0);
    assert_q(conn, "SELECT next_fire_at = '2030-01-01 00:15+00' FROM rhino.schedules", "t");
    /* next_fire_at is in the future: the schedule is not even read */
    ck_assert_int_eq(tick(conn, "2030-01-01 00:14:59+00"), 0);
    ck_assert_int_eq(tick(conn, "2030-01-01 00:15:00+00"), 1);
    assert_q(conn, "SELECT fired_until = '2030-01-01 00:15+00' AND next_fire_at = '2030-01-01 00:30+00' "
                   "FROM rhino.schedules", "t");
    /* the job: the schedule's fields, run_at = its fire time, available at once, linked by its fire row */
    assert_q(conn, "SELECT j.kind || ' ' || j.queue || ' ' || j.payload::text || ' ' || j.priority || ' ' ||"
                   " j.max_attempts || ' ' || j.timeout || ' ' || j.state || ' ' ||"
                   " (j.run_at = '2030-01-01 00:15+00') FROM rhino.jobs j"
                   " JOIN rhino.schedule_fires f ON f.job_id = j.id AND f.fire_time = '2030-01-01 00:15+00'",
             "ok q {\"x\": 1} 3 4 9 available true");
    /* the same now again: nothing */
    ck_assert_int_eq(tick(conn, "2030-01-01 00:15:00+00"), 0);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"), 1);
    PQfinish(conn);
    free(dsn);
}
END_TEST

START_TEST(test_missed_policies)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);

    /* hourly; every fire time up to 10:00 is done; rhino comes back at 13:30 */
    make_schedule(conn, "latest", "0 * * * *", "latest", "2030-01-01 10:00+00");
    make_schedule(conn, "all", "0 * * * *", "all", "2030-01-01 10:00+00");
    make_schedule(conn, "none", "0 * * * *", "none", "2030-01-01 10:00+00");
    ck_assert_int_eq(tick(conn, "2030-01-01 13:30+00"), 4);
    assert_q(conn, "SELECT string_agg(f.schedule_name || '@' || to_char(f.fire_time AT TIME ZONE 'UTC', 'HH24:MI'),"
                   " ' ' ORDER BY f.schedule_name, f.fire_time) FROM rhino.schedule_fires f",
             "all@11:00 all@12:00 all@13:00 latest@13:00");
    /* every policy deals with the missed times: fired_until moves on for all three */
    assert_q(conn, "SELECT bool_and(fired_until = '2030-01-01 13:00+00' AND next_fire_at = '2030-01-01 14:00+00')"
                   " FROM rhino.schedules", "t");
    /* the jobs run in fire order: run_at is the fire time */
    assert_q(conn, "SELECT string_agg(to_char(run_at AT TIME ZONE 'UTC', 'HH24'), ',' ORDER BY id) FROM rhino.jobs"
                   " WHERE payload->>'s' = 'all'", "11,12,13");
    ck_assert_int_eq(tick(conn, "2030-01-01 13:59+00"), 0);
    /* 14:00 seen on time: all three fire, 'none' included */
    ck_assert_int_eq(tick(conn, "2030-01-01 14:00:20+00"), 3);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schedule_fires WHERE schedule_name = 'none'"), 1);
    /* 'none', 15:00 seen 2 minutes late (the reaper stalled): dropped */
    ck_assert_int_eq(tick(conn, "2030-01-01 15:02+00"), 2);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schedule_fires WHERE schedule_name = 'none'"), 1);
    /* 'none' at the boundary (the README: "more than 60 s" late is dropped): 16:00 seen 60 s late runs */
    ck_assert_int_eq(tick(conn, "2030-01-01 16:01:00+00"), 3);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schedule_fires WHERE schedule_name = 'none'"), 2);
    /* ... 17:00 seen 61 s late does not */
    ck_assert_int_eq(tick(conn, "2030-01-01 17:01:01+00"), 2);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schedule_fires WHERE schedule_name = 'none'"), 2);
    /* 'all' after a long downtime: the newest 1000 of 3000 every-minute fires */
    rt_exec(conn, "DELETE FROM rhino.schedules");
    make_schedule(conn, "busy", "* * * * *", "all", "2030-01-01 00:00+00");
    ck_assert_int_eq(tick(conn, "2030-01-03 02:00:30+00"), 1000);
    assert_q(conn, "SELECT count(*) || ' ' || to_char(min(fire_time) AT TIME ZONE 'UTC', 'DD HH24:MI') || ' ' ||"
                   " to_char(max(fire_time) AT TIME ZONE 'UTC', 'DD HH24:MI') FROM rhino.schedule_fires"
                   " WHERE schedule_name = 'busy'", "1000 02 09:21 03 02:00");
    PQfinish(conn);
    free(dsn);
}
END_TEST

/*
 * Connection a fires at now_a inside an open transaction; a child process
 * fires at now_b on its own connection, which blocks on the schedule row;
 * then a commits.  Returns how many jobs the child enqueued.
 */
static int
race(const char *dsn, PGconn *a, const char *now_a, int want_a, const char *now_b)
{
    pid_t child;
    int   status;

    rt_exec(a, "BEGIN");
    ck_assert_int_eq(tick(a, now_a), want_a);
    child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        PGconn *b = PQconnectdb(dsn);
        int     n = PQstatus(b) == CONNECTION_OK ? rh_schedule_tick(b, now_b) : -1;

        PQfinish(b);
        _exit(n < 0 ? 100 : n);
    }
    /*
     * Wait until the child's statement is blocked on our row lock, then
     * commit.  Watched from a third connection: inside a transaction
     * pg_stat_activity is a snapshot taken at its first use.
     */
    {
        PGconn *watch = rt_connect(dsn);

        ck_assert_msg(rt_wait_sql(watch, "SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = current_database()"
                                         " AND wait_event_type = 'Lock'", 30),
                      "the second connection never waited for the first");
        PQfinish(watch);
    }
    rt_exec(a, "COMMIT");
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 100, "the second connection failed");
    return WEXITSTATUS(status);
}

/*
 * Two connections fire the same schedule at the same "now": the second
 * blocks on the schedule row; when the first commits, it re-reads the row,
 * sees fired_until moved, and enqueues nothing.
 */
START_TEST(test_exactly_once_two_connections)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *a = rt_connect(dsn);

    make_schedule(a, "s", "* * * * *", "all", "2030-01-01 00:00+00");
    ck_assert_int_eq(race(dsn, a, "2030-01-01 00:10:30+00", 10, "2030-01-01 00:10:30+00"), 0);
    ck_assert_int_eq(rt_query_long(a, "SELECT count(*) FROM rhino.jobs"), 10);
    ck_assert_int_eq(rt_query_long(a, "SELECT count(DISTINCT fire_time) FROM rhino.schedule_fires f"
                                      " JOIN rhino.jobs j ON j.id = f.job_id AND j.run_at = f.fire_time"), 10);

    /*
     * A stale view: 'latest' at 00:20:30 skips 00:11 .. 00:19 and enqueues
     * 00:20; a second host that read the row at 00:19:30 wants 00:19 -- a
     * fire time nobody enqueued, so only the compare-and-set on fired_until
     * (not the fire rows' primary key) keeps it from running after 00:20.
     */
    rt_exec(a, "UPDATE rhino.schedules SET missed = 'latest'");
    ck_assert_int_eq(race(dsn, a, "2030-01-01 00:20:30+00", 1, "2030-01-01 00:19:30+00"), 0);
    assert_q(a, "SELECT string_agg(to_char(fire_time AT TIME ZONE 'UTC', 'MI'), ',' ORDER BY fire_time)"
                " FROM rhino.schedule_fires WHERE fire_time > '2030-01-01 00:10+00'", "20");
    assert_q(a, "SELECT fired_until = '2030-01-01 00:20+00' FROM rhino.schedules", "t");

    /*
     * And the primary key, not only the compare-and-set: move fired_until
     * back (an operator, a restore) and fire again -- the fire times already
     * enqueued are not enqueued twice, the new one is.
     */
    rt_exec(a, "UPDATE rhino.schedules SET fired_until = '2030-01-01 00:00+00', next_fire_at = NULL, missed = 'all'");
    ck_assert_int_eq(tick(a, "2030-01-01 00:21:30+00"), 10);
    ck_assert_int_eq(rt_query_long(a, "SELECT count(*) FROM rhino.jobs"), 21);
    ck_assert_int_eq(rt_query_long(a, "SELECT count(*) FROM rhino.schedule_fires"), 21);
    assert_q(a, "SELECT fired_until = '2030-01-01 00:21+00' FROM rhino.schedules", "t");
    PQfinish(a);
    free(dsn);
}
END_TEST

/* Several processes fire at once, released together by an advisory lock: the sum is exact. */
START_TEST(test_exactly_once_racers)
{
    enum { RACERS = 4 };
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);
    pid_t   kids[RACERS];
    int     total = 0;

    make_schedule(conn, "a", "* * * * *", "all", "2030-01-01 00:00+00");
    make_schedule(conn, "b", "*/2 * * * *", "latest", "2030-01-01 00:00+00");
    make_schedule(conn, "c", "@hourly", "all", "2029-12-31 00:00+00");
    rt_exec(conn, "SELECT pg_advisory_lock(4711)");
    for (int i = 0; i < RACERS; i++) {
        kids[i] = fork();
        ck_assert_int_ge(kids[i], 0);
        if (kids[i] == 0) {
            PGconn   *c = PQconnectdb(dsn);
            PGresult *r;
            int       n;

            if (PQstatus(c) != CONNECTION_OK)
                _exit(200);
            r = PQexec(c, "SELECT pg_advisory_lock_shared(4711)");     /* the starting gun */
            PQclear(r);
            n = rh_schedule_tick(c, "2030-01-01 00:30:00+00");
            PQfinish(c);
            _exit(n < 0 ? 201 : n);
        }
    }
    ck_assert(rt_wait_sql(conn, "SELECT count(*) = 4 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted", 30));
    rt_exec(conn, "SELECT pg_advisory_unlock(4711)");
    for (int i = 0; i < RACERS; i++) {
        int status;

        ck_assert_int_eq(waitpid(kids[i], &status, 0), kids[i]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) < 200, "racer %d failed (%d)", i, status);
        total += WEXITSTATUS(status);
    }
    /* a: 30 minutes; b: the newest of 15; c: the 24 hours from 2029-12-31 01:00 to 2030-01-01 00:00 */
    ck_assert_int_eq(total, 30 + 1 + 24);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs"), 55);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schedule_fires"), 55);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* A row this rhino cannot parse (only possible around the check constraint) is parked and named. */
START_TEST(test_unparsable_row_is_parked)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);

    rt_exec(conn, "ALTER TABLE rhino.schedules DROP CONSTRAINT schedules_cron");
    rt_exec(conn, "INSERT INTO rhino.schedules (name, cron, kind) VALUES ('bad', '61 * * * *', 'k')");
    make_schedule(conn, "good", "* * * * *", "latest", "2030-01-01 00:00+00");
    ck_assert_int_eq(tick(conn, "2030-01-01 00:01:01+00"), 1);
    assert_q(conn, "SELECT error || ' / ' || next_fire_at FROM rhino.schedules WHERE name = 'bad'",
             "cron expression \"61 * * * *\": minute field \"61\": 61 is out of range 0-59 / infinity");
    /* parked: not read again; changing it through rhino.schedule() brings it back */
    ck_assert_int_eq(tick(conn, "2030-01-01 00:02:01+00"), 1);
    rt_exec(conn, "SELECT rhino.schedule('bad', '* * * * *', 'k')");
    assert_q(conn, "SELECT (error IS NULL) || ' ' || (next_fire_at IS NULL) FROM rhino.schedules WHERE name = 'bad'",
             "true true");
    /* a fired_until past the year 9999 has no next fire time: parked too, not re-read every pass */
    rt_exec(conn, "UPDATE rhino.schedules SET fired_until = '12000-01-01', next_fire_at = NULL WHERE name = 'bad'");
    ck_assert_int_eq(tick(conn, "2030-01-01 00:03:01+00"), 1);
    assert_q(conn, "SELECT error || ' / ' || next_fire_at FROM rhino.schedules WHERE name = 'bad'",
             "no fire time within 100 years of its fired_until (or past the year 9999) / infinity");
    free(qerr(conn, "UPDATE rhino.schedules SET fired_until = 'infinity'", NULL, NULL, 0));
    PQfinish(conn);
    free(dsn);
}
END_TEST

START_TEST(test_prune_keeps_the_newest)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);

    make_schedule(conn, "a", "0 * * * *", "all", "2020-01-01 00:00+00");
    make_schedule(conn, "b", "0 0 1 1 *", "latest", "2019-01-01 00:00+00");
    ck_assert_int_eq(tick(conn, "2020-01-01 05:00+00"), 6);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schedule_fires"), 6);
    /* everything is years old: all but the newest row of each schedule go */
    ck_assert_int_eq(rh_schedule_prune(conn, 3600), 4);
    ck_assert_int_eq(rh_schedule_prune(conn, 3600), 0);
    assert_q(conn, "SELECT string_agg(schedule_name || '@' || to_char(fire_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24'),"
                   " ' ' ORDER BY schedule_name) FROM rhino.schedule_fires", "a@2020-01-01 05 b@2020-01-01 00");
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* ---- config schedules ------------------------------------------------------------------ */

static void
load_cfg(const char *sections, rh_config_t *cfg)
{
    char  ini[4096], err[1024];
    char *path;

    snprintf(ini, sizeof(ini), "[handlers]\npath = /nonexistent.so\n%s", sections);
    path = rt_write_file("rhino.ini", ini);
    ck_assert_msg(rh_config_load(path, cfg, err, sizeof(err)) == 0, "%s", err);
    free(path);
}

START_TEST(test_config_sync)
{
    char       *dsn = rt_db_create_migrated();
    PGconn     *conn = rt_connect(dsn);
    rh_config_t cfg;
    char       *v1, *v2;

    load_cfg("[schedule nightly]\ncron = 0 3 * * *\nkind = report\npayload = '{\"to\": \"ops\"}'\n"
             "queue = slow\npriority = 2\nmax_attempts = 3\ntimeout = 60\nmissed = none\n"
             "[schedule tick]\ncron = @hourly\nkind = tick\n", &cfg);
    ck_assert_int_eq(rh_schedule_sync(conn, &cfg), 0);
    assert_q(conn, "SELECT string_agg(name || ' ' || cron || ' ' || kind || ' ' || payload::text || ' ' || queue ||"
                   " ' ' || priority || ' ' || max_attempts || ' ' || coalesce(timeout::text, '-') || ' ' || missed ||"
                   " ' ' || source, '; ' ORDER BY name) FROM rhino.schedules",
             "nightly 0 3 * * * report {\"to\": \"ops\"} slow 2 3 60 none config; "
             "tick @hourly tick {} default 0 25 - latest config");
    /* applying the same config again (every start, every SIGHUP) changes nothing */
    rt_exec(conn, "UPDATE rhino.schedules SET fired_until = '2001-01-01'");
    v1 = rt_query1(conn, "SELECT string_agg(updated_at::text || fired_until::text, ',') FROM rhino.schedules");
    ck_assert_int_eq(rh_schedule_sync(conn, &cfg), 0);
    v2 = rt_query1(conn, "SELECT string_agg(updated_at::text || fired_until::text, ',') FROM rhino.schedules");
    ck_assert_str_eq(v1, v2);
    free(v1);
    free(v2);
    rh_config_free(&cfg);

    /* a new config: nightly's expression changed (it starts afresh), tick is gone (kept, warned about) */
    load_cfg("[schedule nightly]\ncron = 0 4 * * *\nkind = report\n", &cfg);
    ck_assert_int_eq(rh_schedule_sync(conn, &cfg), 0);
    assert_q(conn, "SELECT cron || ' ' || payload::text || ' ' || (fired_until = date_trunc('minute', now()))"
                   " FROM rhino.schedules WHERE name = 'nightly'", "0 4 * * * {} true");
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.schedules WHERE name = 'tick'"), 1);
    rh_config_free(&cfg);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* ---- rhinoctl ------------------------------------------------------------------------ */


START_TEST(test_rhinoctl)
{
    char   *dsn = rt_db_create_migrated();
    PGconn *conn = rt_connect(dsn);
    char   *out, *err;

    ck_assert_int_eq(rt_ctl(dsn, NULL, &out, &err, "schedule", "nightly", "0 3 * * *", "report", "--payload",
                         "{\"to\": \"ops\"}", "--queue", "slow", NULL), 0);
    ck_assert_msg(strstr(out, "schedule nightly created: \"0 3 * * *\"") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "next fire at ") != NULL && strstr(out, "T03:00:00Z") != NULL, "%s", out);
    free(out);
    free(err);
    assert_q(conn, "SELECT kind || ' ' || queue || ' ' || payload::text || ' ' || source FROM rhino.schedules",
             "report slow {\"to\": \"ops\"} sql");
    ck_assert_int_eq(rt_ctl(dsn, NULL, &out, &err, "schedule", "nightly", "0 3 * * *", "report", "--payload={\"to\": \"ops\"}",
                         "--queue=slow", "--missed", "all", NULL), 0);
    ck_assert_msg(strstr(out, "schedule nightly changed") != NULL, "%s", out);
    free(out);
    free(err);
    ck_assert_int_eq(rt_ctl(dsn, NULL, &out, &err, "schedule", "nightly", "0 3 * * *", "report", "{\"to\": \"ops\"}",
                         "--queue=slow", "--missed", "all", NULL), 0);
    ck_assert_msg(strstr(out, "schedule nightly unchanged") != NULL, "%s", out);
    free(out);
    free(err);

    /* usage errors, before the database: exit 2 and a message naming the field */
    ck_assert_int_eq(rt_ctl(dsn, NULL, &out, &err, "schedule", "bad", "0 0 31 2 *", "k", NULL), 2);
    ck_assert_msg(strstr(err, "day-of-month field \"31\" names no day that month field \"2\" has") != NULL, "%s", err);
    free(out);
    free(err);
    ck_assert_int_eq(rt_ctl(dsn, NULL, &out, &err, "schedule", "bad", "* * * *", "k", NULL), 2);
    ck_assert_msg(strstr(err, "4 fields; expected 5") != NULL, "%s", err);
    free(out);
    free(err);
    ck_assert_int_eq(rt_ctl(dsn, NULL, &out, &err, "schedule", "bad", "@daily", "k", "--missed", "never", NULL), 2);
    ck_assert_msg(strstr(err, "--missed: \"never\" is not one of latest, all, none") != NULL, "%s", err);
    free(out);
    free(err);
    ck_assert_int_eq(rt_ctl(dsn, NULL, &out, &err, "schedule", "bad", "@daily", NULL), 2);
    free(out);
    free(err);
    /* the database refuses bad JSON: exit 1 */
    ck_assert_int_eq(rt_ctl(dsn, NULL, &out, &err, "schedule", "bad", "@daily", "k", "--payload", "{nope", NULL), 1);
    ck_assert_msg(strstr(err, "json") != NULL, "%s", err);
    free(out);
    free(err);

    /* the list: next fire computed from the expression, last fire from the fire rows */
    rt_exec(conn, "SELECT rhino.schedule('every', '* * * * *', 'ok')");
    rt_exec(conn, "UPDATE rhino.schedules SET fired_until = date_trunc('minute', now()) - interval '2 minutes',"
                  " next_fire_at = NULL WHERE name = 'every'");
    ck_assert_int_eq(tick(conn, NULL), 1);
    ck_assert_int_eq(rt_ctl(dsn, NULL, &out, &err, "schedules", NULL), 0);
    ck_assert_msg(strstr(out, "NAME") != NULL && strstr(out, "NEXT_FIRE") != NULL && strstr(out, "LAST_FIRE") != NULL,
                  "%s", out);
    ck_assert_msg(strstr(out, "every") != NULL && strstr(out, "nightly") != NULL && strstr(out, "0 3 * * *") != NULL,
                  "%s", out);
    free(out);
    free(err);
    ck_assert_int_eq(rt_ctl(dsn, NULL, &out, &err, "schedules", "--json", NULL), 0);
    ck_assert_msg(strstr(out, "{\"name\":\"every\",\"cron\":\"* * * * *\",\"kind\":\"ok\",\"queue\":\"default\"")
                  == out, "%s", out);
    ck_assert_msg(strstr(out, "\"last_job_id\":1,") != NULL && strstr(out, "\"next_fire\":\"20") != NULL &&
                  strstr(out, "\"payload\":{\"to\": \"ops\"}") != NULL && strstr(out, "\"missed\":\"all\"") != NULL,
                  "%s", out);
    free(out);
    free(err);

    ck_assert_int_eq(rt_ctl(dsn, NULL, &out, &err, "unschedule", "nightly", NULL), 0);
    ck_assert_str_eq(out, "unscheduled nightly\n");
    free(out);
    free(err);
    ck_assert_int_eq(rt_ctl(dsn, NULL, &out, &err, "unschedule", "nightly", NULL), 1);
    ck_assert_msg(strstr(err, "unschedule: no schedule nightly") != NULL, "%s", err);
    free(out);
    free(err);
    PQfinish(conn);
    free(dsn);
}
END_TEST

/* ---- real daemons ----------------------------------------------------------------------- */

typedef struct {
    char   *dsn;
    PGconn *conn;
    char   *ini;
    char    log[4096], ledger[4096];
    char    env_dsn[4200], env_ledger[4200];
    pid_t   pid;
} sd_t;

static const char *
handlers_so(void)
{
    static char path[4096];

    snprintf(path, sizeof(path), "%s/test_handlers.so", rt_env("RHINO_TEST_HANDLERS"));
    return path;
}

static void
sd_config(sd_t *d, const char *extra)
{
    char ini[8192];

    snprintf(ini, sizeof(ini),
             "[worker]\nprocesses = 1\nbatch_size = 100\npoll_interval = 0.05\n"
             "[handlers]\npath = %s\n[reaper]\ninterval = 0.1\n%s", handlers_so(), extra);
    free(d->ini);
    d->ini = rt_write_file("rhino.ini", ini);
}

static void
sd_setup(sd_t *d, const char *dsn, const char *extra, const char *tag)
{
    memset(d, 0, sizeof(*d));
    d->dsn = strdup(dsn);
    d->conn = rt_connect(dsn);
    sd_config(d, extra);
    snprintf(d->log, sizeof(d->log), "%s.%s.log", d->ini, tag);
    snprintf(d->ledger, sizeof(d->ledger), "%s.ledger", d->ini);
    snprintf(d->env_dsn, sizeof(d->env_dsn), "RHINO_DSN=%s", dsn);
    snprintf(d->env_ledger, sizeof(d->env_ledger), "RHINO_TEST_LEDGER=%s", d->ledger);
}

static void
sd_start(sd_t *d)
{
    char *argv[] = { (char *) rt_env("RHINO_BIN"), "-c", d->ini, NULL };
    char *env[] = { d->env_dsn, d->env_ledger, NULL };

    d->pid = rt_spawn(argv, env, d->log);
    ck_assert_int_gt(d->pid, 0);
}

static void
sd_dump(sd_t *d)
{
    char *log = rt_read_file(d->log);

    fprintf(stderr, "---- rhino log ----\n%s-------------------\n", log ? log : "(none)");
    free(log);
}

static void
sd_wait(sd_t *d, const char *sql, double timeout)
{
    if (!rt_wait_sql(d->conn, sql, timeout)) {
        sd_dump(d);
        ck_abort_msg("timed out after %.0f s waiting for: %s", timeout, sql);
    }
}

static void
sd_stop(sd_t *d)
{
    int   rc;
    char *log;

    kill(d->pid, SIGTERM);
    rc = rt_wait_exit(d->pid, 30);
    if (rc != 0)
        sd_dump(d);
    ck_assert_msg(rc == 0, "rhino exited with %d after SIGTERM", rc);
    d->pid = 0;
    log = rt_read_file(d->log);
    ck_assert_ptr_nonnull(log);
    free(log);
    rt_check_log(d->log, NULL, 0);
    PQfinish(d->conn);
    free(d->dsn);
    free(d->ini);
}

/* How often each job id appears in the ledger (the test handlers write one line per run); -1 if never. */
static int
ledger_runs(const char *ledger, long id)
{
    char *text = rt_read_file(ledger), *save = NULL, *line;
    int   n = 0;

    if (text == NULL)
        return 0;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char kind[64];
        long lid;
        int  attempt, pid;

        if (sscanf(line, "%63s %ld %d %d", kind, &lid, &attempt, &pid) == 4 && lid == id)
            n++;
    }
    free(text);
    return n;
}

/*
 * Every scheduled job completed and ran exactly once by the ledger -- or,
 * enqueued by a minute that turned just before the stop, was never claimed
 * and never ran.
 */
static void
assert_each_ran_once(PGconn *conn, const char *ledger)
{
    PGresult *res = PQexec(conn, "SELECT f.job_id, j.state, j.attempt FROM rhino.schedule_fires f"
                                 " JOIN rhino.all_jobs j ON j.id = f.job_id ORDER BY 1");

    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    ck_assert_int_eq(PQntuples(res), rt_query_long(conn, "SELECT count(*) FROM rhino.schedule_fires"));
    for (int r = 0; r < PQntuples(res); r++) {
        long        id = atol(PQgetvalue(res, r, 0));
        const char *state = PQgetvalue(res, r, 1);

        if (strcmp(state, "available") == 0 && strcmp(PQgetvalue(res, r, 2), "0") == 0) {
            ck_assert_msg(ledger_runs(ledger, id) == 0, "job %ld is available but ran", id);
            continue;
        }
        ck_assert_msg(strcmp(state, "completed") == 0, "job %ld is %s", id, state);
        ck_assert_msg(ledger_runs(ledger, id) == 1, "job %ld ran %d time(s)", id, ledger_runs(ledger, id));
    }
    PQclear(res);
    /* and there are no jobs but scheduled ones */
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.all_jobs j WHERE NOT EXISTS"
                                         " (SELECT 1 FROM rhino.schedule_fires f WHERE f.job_id = j.id)"), 0);
}

/*
 * One daemon: a config schedule appears in the table; after a simulated
 * downtime (fired_until moved back 5 minutes) it enqueues only the newest
 * missed fire ('latest'), and the job runs.  A SQL schedule with 'all'
 * catches up every missed minute.  A SIGHUP with another config applies the
 * new section and warns about the one that is gone.
 */
START_TEST(test_daemon_fires_and_runs)
{
    char *dsn = rt_db_create_migrated();
    sd_t  d;
    char *b1, *b2, sql[1024], *log;

    sd_setup(&d, dsn, "[schedule every]\ncron = * * * * *\nkind = ok\n", "a");
    rt_exec(d.conn, "SELECT rhino.schedule('catchup', '* * * * *', 'ok', missed => 'all')");
    b2 = rt_query1(d.conn, "UPDATE rhino.schedules SET fired_until = date_trunc('minute', now()) - interval '3 minutes',"
                           " next_fire_at = NULL WHERE name = 'catchup' RETURNING fired_until::text");
    sd_start(&d);
    sd_wait(&d, "SELECT count(*) = 1 FROM rhino.schedules WHERE name = 'every' AND source = 'config'"
                " AND next_fire_at IS NOT NULL", 30);

    b1 = rt_query1(d.conn, "UPDATE rhino.schedules SET fired_until = date_trunc('minute', now()) - interval '5 minutes',"
                           " next_fire_at = NULL WHERE name = 'every' RETURNING fired_until::text");
    /* 'latest': the newest due minute runs; the four before it do not */
    snprintf(sql, sizeof(sql), "SELECT count(*) >= 1 FROM rhino.schedule_fires f JOIN rhino.jobs_done d"
                               " ON d.id = f.job_id AND d.state = 'completed'"
                               " WHERE f.schedule_name = 'every' AND f.fire_time > '%s'", b1);
    sd_wait(&d, sql, 30);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM rhino.schedule_fires WHERE schedule_name = 'every'"
                               " AND fire_time > '%s' AND fire_time < '%s'::timestamptz + interval '5 minutes'", b1, b1);
    ck_assert_int_eq(rt_query_long(d.conn, sql), 0);
    /* 'all': each of the three missed minutes, once */
    snprintf(sql, sizeof(sql), "SELECT count(*) = 3 FROM rhino.schedule_fires f JOIN rhino.jobs_done d"
                               " ON d.id = f.job_id AND d.state = 'completed' WHERE f.schedule_name = 'catchup'"
                               " AND f.fire_time > '%s' AND f.fire_time <= '%s'::timestamptz + interval '3 minutes'",
             b2, b2);
    sd_wait(&d, sql, 30);

    /* SIGHUP: the same file, now without [schedule every] and with [schedule other] */
    {
        FILE *f = fopen(d.ini, "w");

        ck_assert_ptr_nonnull(f);
        fprintf(f, "[worker]\nprocesses = 1\nbatch_size = 100\npoll_interval = 0.05\n"
                   "[handlers]\npath = %s\n[reaper]\ninterval = 0.1\n"
                   "[schedule other]\ncron = 0 0 1 1 *\nkind = ok\nmissed = none\n", handlers_so());
        ck_assert_int_eq(fclose(f), 0);
    }
    kill(d.pid, SIGHUP);
    sd_wait(&d, "SELECT count(*) = 1 FROM rhino.schedules WHERE name = 'other' AND source = 'config'", 30);
    sd_wait(&d, "SELECT count(*) = 3 FROM rhino.schedules", 5);
    {
        double deadline = rt_now() + 20;
        int    found = 0;

        while (!found && rt_now() < deadline) {
            log = rt_read_file(d.log);
            found = log && strstr(log, "schedule every came from a [schedule every] section that this configuration "
                                       "does not have") != NULL;
            free(log);
            if (!found)
                usleep(50000);
        }
        if (!found)
            sd_dump(&d);
        ck_assert_msg(found, "no warning about the schedule that left the config");
    }
    {
        PGconn *c = d.conn;
        char    ledger[4096];

        snprintf(ledger, sizeof(ledger), "%s", d.ledger);
        d.conn = rt_connect(dsn);
        sd_stop(&d);
        /* jobs still running at the stop were finished by the drain */
        assert_each_ran_once(c, ledger);
        PQfinish(c);
    }
    free(b1);
    free(b2);
    free(dsn);
}
END_TEST

/* Two masters on one database fire a 30-minute catch-up: 30 jobs, each once. */
START_TEST(test_two_daemons_fire_once)
{
    char *dsn = rt_db_create_migrated();
    sd_t  a, b;
    char *from, sql[1024];
    const char *section = "[schedule shared]\ncron = * * * * *\nkind = ok\nmissed = all\n";

    char        extra[512];

    snprintf(extra, sizeof(extra), "%s[master]\nname = host-a\n", section);
    sd_setup(&a, dsn, extra, "a");
    snprintf(extra, sizeof(extra), "%s[master]\nname = host-b\n", section);
    sd_setup(&b, dsn, extra, "b");
    /* b writes to a's ledger, so that one file says how often each job ran */
    snprintf(b.env_ledger, sizeof(b.env_ledger), "RHINO_TEST_LEDGER=%s", a.ledger);
    /* the same schedule, 30 minutes behind, before either starts */
    rt_exec(a.conn, "SELECT rhino.schedule('shared', '* * * * *', 'ok', missed => 'all')");
    from = rt_query1(a.conn, "UPDATE rhino.schedules SET fired_until = date_trunc('minute', now()) - interval '30 minutes',"
                             " next_fire_at = NULL RETURNING fired_until::text");
    sd_start(&a);
    sd_start(&b);
    snprintf(sql, sizeof(sql), "SELECT count(*) = 30 FROM rhino.schedule_fires f JOIN rhino.jobs_done d"
                               " ON d.id = f.job_id AND d.state = 'completed' WHERE f.fire_time > '%s'"
                               " AND f.fire_time <= '%s'::timestamptz + interval '30 minutes'", from, from);
    sd_wait(&a, sql, 60);
    ck_assert_int_eq(rt_query_long(a.conn, "SELECT count(*) FROM rhino.nodes WHERE stopped_at IS NULL"), 2);
    {
        PGconn *c = rt_connect(dsn);
        char    ledger[4096];

        snprintf(ledger, sizeof(ledger), "%s", a.ledger);
        sd_stop(&a);
        sd_stop(&b);
        ck_assert_int_eq(rt_query_long(c, "SELECT count(*) FROM rhino.schedule_fires"),
                         rt_query_long(c, "SELECT count(*) FROM rhino.all_jobs"));
        assert_each_ran_once(c, ledger);
        PQfinish(c);
    }
    free(from);
    free(dsn);
}
END_TEST

static Suite *
schedule_suite(void)
{
    Suite *s = suite_create("schedule");
    TCase *tc;

    tc = tcase_create("sql");
    tcase_add_test(tc, test_sql_agrees_with_c);
    tcase_add_test(tc, test_schedule_functions);
    tcase_add_test(tc, test_config_sync);
    tcase_add_test(tc, test_rhinoctl);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);

    tc = tcase_create("firing");
    tcase_add_test(tc, test_fire_creates_linked_jobs);
    tcase_add_test(tc, test_missed_policies);
    tcase_add_test(tc, test_exactly_once_two_connections);
    tcase_add_test(tc, test_exactly_once_racers);
    tcase_add_test(tc, test_unparsable_row_is_parked);
    tcase_add_test(tc, test_prune_keeps_the_newest);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);

    tc = tcase_create("daemon");
    tcase_add_test(tc, test_daemon_fires_and_runs);
    tcase_add_test(tc, test_two_daemons_fire_once);
    tcase_set_timeout(tc, 180);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(schedule_suite());
    int      failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
