/*
 * check_features.c - snooze, cancellation of running jobs, the error history
 * and dead letters, against a real PostgreSQL and the real daemon.
 */
#include "config.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rh_testlib.h"


/* How many lines of the ledger name job id (the tests enqueue at most 10 jobs). */
static int
runs_of(rt_daemon_t *d, long id)
{
    int *counts = rt_daemon_ledger_counts(d, 10);
    int  n = counts[id];

    free(counts);
    return n;
}

/* ---- wake-ups ----------------------------------------------------------- */

/*
 * Workers that poll only every 60 s still start a new job at once: the
 * master LISTENs, tells rhino.nodes it has idle workers, rhino.enqueue
 * notifies, and the master wakes one.  With listen = off they would wait.
 */
START_TEST(test_notify_wakes_idle_worker)
{
    rt_daemon_t d;

    rt_daemon_setup(&d, "[worker]\npoll_interval = 60\n");
    rt_daemon_start(&d);
    /* ready and idle: the workers made their first (empty) claim */
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.nodes WHERE idle", 30);
    rt_exec(d.conn, "SELECT rhino.enqueue('ok')");
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.jobs_done WHERE state = 'completed'", 20);
    /* and a job made due by the reaper's promotion wakes them too */
    rt_exec(d.conn, "SELECT rhino.enqueue('ok', run_at => now() + interval '1 s')");
    rt_daemon_wait(&d, "SELECT count(*) = 2 FROM rhino.jobs_done WHERE state = 'completed'", 20);
    rt_daemon_stop(&d);
    /* a stopped node no longer asks for notifications */
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.nodes WHERE idle AND stopped_at IS NULL"), 0);
    rt_daemon_teardown(&d);
}
END_TEST

/*
 * A producer notifies only when an idle node serves its job's queue
 * (sql/010_wake_by_queue.sql): a job of a queue nobody serves costs no
 * NOTIFY, one of a served queue still wakes a worker that polls only every
 * 60 s.  A connection of the test's own LISTENs on the channel and counts.
 */
static int
notifications(PGconn *listener, const char *want)
{
    PGnotify *n;
    int       count = 0;

    rt_exec(listener, "SELECT 1");      /* pending notifications arrive before its answer */
    ck_assert_int_eq(PQconsumeInput(listener), 1);
    while ((n = PQnotifies(listener)) != NULL) {
        ck_assert_str_eq(n->extra, want);
        count++;
        PQfreemem(n);
    }
    return count;
}

START_TEST(test_notify_only_for_served_queues)
{
    rt_daemon_t d;
    PGconn     *listener;

    rt_daemon_setup(&d, "[worker]\npoll_interval = 60\nqueues = default, mail\n");
    rt_daemon_start(&d);
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.nodes WHERE idle AND queues = '{default,mail}'", 30);
    listener = rt_connect(d.dsn);
    rt_exec(listener, "LISTEN rhino_jobs");
    rt_exec(d.conn, "SELECT rhino.enqueue('ok', queue => 'elsewhere')");
    ck_assert_int_eq(notifications(listener, "elsewhere"), 0);
    rt_exec(d.conn, "SELECT rhino.enqueue('ok', queue => 'mail')");
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.jobs_done WHERE state = 'completed'", 20);
    ck_assert_int_eq(notifications(listener, "mail"), 1);
    rt_daemon_stop(&d);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs WHERE queue = 'elsewhere'"), 1);
    PQfinish(listener);
    rt_daemon_teardown(&d);
}
END_TEST

/* ---- snooze ------------------------------------------------------------- */

START_TEST(test_snooze_reruns_without_an_error)
{
    rt_daemon_t d;

    rt_daemon_setup(&d, NULL);
    rt_exec(d.conn, "SELECT rhino.enqueue('snooze_twice', max_attempts => 1)");
    rt_daemon_start(&d);
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.jobs_done WHERE state = 'completed'", 30);
    rt_daemon_stop(&d);

    /* three runs (two snoozes), max_attempts 1 not exhausted: snoozes are not errors */
    ck_assert_int_eq(runs_of(&d, 1), 3);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT attempt FROM rhino.jobs_done WHERE id = 1"), 3);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT errors FROM rhino.jobs_done WHERE id = 1"), 0);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.job_errors"), 0);
    /* the snooze waited: at least two delays of 0.2 s between creation and completion */
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT (finished_at - created_at >= interval '0.4 s')::int "
                                           "FROM rhino.jobs_done WHERE id = 1"), 1);
    rt_daemon_teardown(&d);
}
END_TEST

/*
 * One batch holds ok jobs next to outcomes PostgreSQL would refuse if sent
 * as they are: error text with UTF-8 sequences a lax check lets through
 * (SQLSTATE 22021), snoozes of inf, 1e13 s (make_interval: 22008), NaN and
 * a negative delay.  Each used to make every finalize of its batch fail;
 * the worker exited after 10, the jobs were rescued and ran again, and the
 * fleet looped with the ok jobs never recorded.  Now the ok jobs complete,
 * the error text is cleaned, absurd snoozes are clamped to RHINO_SNOOZE_MAX
 * and NaN or negative ones mean "now".
 */
START_TEST(test_absurd_outcomes_do_not_block_the_batch)
{
    rt_daemon_t d;
    char       *s;

    rt_daemon_setup(&d, "[worker]\nprocesses = 1\n");
    rt_exec(d.conn, "SELECT rhino.enqueue('ok') FROM generate_series(1, 3)");                  /* 1-3 */
    rt_exec(d.conn, "SELECT rhino.enqueue('bad_utf8_strict')");                               /* 4 */
    rt_exec(d.conn, "SELECT rhino.enqueue('snooze_absurd', jsonb_build_object('secs', s))"   /* 5-8 */
                    "  FROM unnest(ARRAY['inf', '1e13', 'nan', '-5']) s");
    rt_exec(d.conn, "SELECT rhino.enqueue('ok') FROM generate_series(1, 2)");                  /* 9-10 */
    rt_daemon_start(&d);
    rt_daemon_wait(&d, "SELECT count(*) = 5 FROM rhino.jobs_done WHERE kind = 'ok' AND state = 'completed'", 20);
    rt_daemon_wait(&d, "SELECT count(*) = 2 FROM rhino.jobs_done WHERE kind = 'snooze_absurd'"
                       " AND state = 'completed'", 20);
    rt_daemon_stop(&d);

    s = rt_query1(d.conn, "SELECT state || ': ' || last_error FROM rhino.all_jobs WHERE id = 4");
    ck_assert_str_eq(s, "discarded: surrogate ??? overlong ??? ???? too high ???? ???? ok \xc3\xa9\xe2\x82\xac");
    free(s);
    /* inf and 1e13 s: snoozed for the longest delay allowed, no error counted */
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs WHERE id IN (5, 6)"
                                           " AND state = 'scheduled' AND errors = 0"
                                           " AND run_at > now() + interval '364 days'"
                                           " AND run_at < now() + interval '366 days'"), 2);
    /* nan and -5: ran again at once */
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs_done WHERE id IN (7, 8)"
                                           " AND attempt = 2 AND errors = 0"), 2);
    /* each job ran once (the snoozed-now ones twice): nothing looped */
    for (long id = 1; id <= 10; id++)
        ck_assert_int_eq(runs_of(&d, id), id == 7 || id == 8 ? 2 : 1);
    rt_daemon_teardown(&d);
}
END_TEST

/*
 * An outcome the database refuses for a reason the worker cannot foresee:
 * a LATIN1 database, a UTF-8 client, an error text with a euro sign
 * (SQLSTATE 22P05, a data exception).  The finalize of the batch fails
 * once; the worker then sends the outcomes again with their error texts
 * reduced to ASCII, and the ok jobs next to it complete.  With drain set,
 * the refused outcome is still pending when a SIGTERM comes (a slow job
 * holds the batch): the drain's final finalize fails the same way, and had
 * the worker exit, every job of the batch to be run again.  With tx set,
 * the jobs are one transactional group: its completion failed, and the
 * retry undid the siblings' writes on every attempt (they ended at
 * attempt 2 with an error); now the group runs again once, at once, with
 * its outcomes reduced to ASCII.
 */
static void
data_exception_in_finalize(int drain, int tx)
{
    rt_daemon_t d;
    PGconn     *admin;
    char       *db, *out, *err, sql[256];
    int         rc;

    rt_daemon_setup(&d, "[worker]\nprocesses = 1\n");
    d.allow_errors = 1;         /* the first finalize fails, and says so */
    db = rt_query1(d.conn, "SELECT current_database()");
    PQfinish(d.conn);
    admin = rt_connect(rt_env("RHINO_TEST_DSN"));
    snprintf(sql, sizeof(sql), "DROP DATABASE \"%s\"", db);
    rt_exec(admin, sql);
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\" ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'"
             " TEMPLATE template0", db);
    rt_exec(admin, sql);
    PQfinish(admin);
    rc = rt_ctl(d.dsn, NULL, &out, &err, "migrate", NULL);
    ck_assert_msg(rc == 0, "migrate exited %d: %s", rc, err);
    free(out);
    free(err);
    d.conn = rt_connect(d.dsn);
    /* a keyword=value conninfo (rh_testlib's dsn_with) */
    snprintf(d.env_dsn, sizeof(d.env_dsn), "RHINO_DSN=%s client_encoding=UTF8", d.dsn);

    if (tx) {
        rt_exec(d.conn, "CREATE TABLE ledger (job_id bigint NOT NULL, attempt int NOT NULL, pid int NOT NULL)");
        rt_exec(d.conn, "SELECT rhino.enqueue('tx_ledger') FROM generate_series(1, 3)");
        rt_exec(d.conn, "SELECT rhino.enqueue('tx_ledger', '{\"euro\": 1}')");
        rt_daemon_start(&d);
        rt_daemon_wait(&d, "SELECT count(*) = 4 FROM rhino.jobs_done", 20);
        rt_daemon_stop(&d);
        /* the siblings completed at their first attempt, no error counted, their writes once */
        ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'completed'"
                                               " AND attempt = 1 AND errors = 0"), 3);
        ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM ledger WHERE job_id <= 3"), 3);
        ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(DISTINCT job_id) FROM ledger"), 3);
    } else if (drain) {
        rt_exec(d.conn, "SELECT rhino.enqueue('ok') FROM generate_series(1, 3)");
        rt_exec(d.conn, "SELECT rhino.enqueue('euro_error')");
        rt_exec(d.conn, "SELECT rhino.enqueue('ok', '{\"ms\": 2000}')");
        rt_daemon_start(&d);
        rt_daemon_wait(&d, "SELECT count(*) = 5 FROM rhino.jobs WHERE state = 'running'", 20);
        usleep(700 * 1000);     /* the four quick ones ran; the slow one holds the batch */
        rt_daemon_stop(&d);
        ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'completed'"),
                         4);
    } else {
        rt_exec(d.conn, "SELECT rhino.enqueue('ok') FROM generate_series(1, 3)");
        rt_exec(d.conn, "SELECT rhino.enqueue('euro_error')");
        rt_exec(d.conn, "SELECT rhino.enqueue('ok') FROM generate_series(1, 3)");
        rt_daemon_start(&d);
        rt_daemon_wait(&d, "SELECT count(*) = 7 FROM rhino.jobs_done", 20);
        rt_daemon_stop(&d);
        ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'completed'"),
                         6);
    }
    out = rt_query1(d.conn, "SELECT state || ': ' || last_error FROM rhino.jobs_done WHERE id = 4");
    ck_assert_str_eq(out, "discarded: costs 5 ???");
    free(out);
    for (long id = 1; !tx && id <= (drain ? 5 : 7); id++)   /* tx_ledger's runs are the table ledger */
        ck_assert_int_eq(runs_of(&d, id), 1);
    out = rt_read_file(d.log);
    ck_assert_msg(strstr(out, "reduced to ASCII") != NULL, "%s", out);
    if (drain)
        ck_assert_msg(strstr(out, "the final finalize failed with a data exception") != NULL, "%s", out);
    free(out);
    free(db);
    rt_daemon_teardown(&d);
}

START_TEST(test_data_exception_in_finalize_is_isolated)
{
    data_exception_in_finalize(0, 0);
}
END_TEST

START_TEST(test_data_exception_in_the_drain)
{
    data_exception_in_finalize(1, 0);
}
END_TEST

START_TEST(test_data_exception_in_a_transactional_group)
{
    data_exception_in_finalize(0, 1);
}
END_TEST

/* ---- deadlines ---------------------------------------------------------- */

/*
 * With job_timeout = 0 a job has no deadline, and rhino_job_extend must not
 * give it one: extend(1 s) and 2.5 s of work used to get the worker killed
 * as a timeout, the job retried.
 */
START_TEST(test_extend_without_deadline_keeps_none)
{
    rt_daemon_t d;

    rt_daemon_setup(&d, "[worker]\nprocesses = 1\njob_timeout = 0\n");
    rt_exec(d.conn, "SELECT rhino.enqueue('extend_short')");
    rt_daemon_start(&d);
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.jobs_done", 30);
    rt_daemon_stop(&d);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs_done WHERE state = 'completed'"
                                           " AND attempt = 1 AND crash_count = 0"), 1);
    ck_assert_int_eq(runs_of(&d, 1), 1);
    rt_daemon_teardown(&d);
}
END_TEST

/* ---- error history and dead letters ------------------------------------- */

START_TEST(test_every_error_is_kept_and_redrivable)
{
    rt_daemon_t d;
    char       *out, *err, *n;
    int         rc;

    rt_daemon_setup(&d, NULL);
    d.allow_errors = 1;
    rt_exec(d.conn, "SELECT rhino.enqueue('always_fail', max_attempts => 3)");
    rt_exec(d.conn, "SELECT rhino.enqueue('ok')");
    rt_daemon_start(&d);
    rt_daemon_wait(&d, "SELECT count(*) = 2 FROM rhino.jobs_done", 30);

    /* one row per failed attempt, in order, and none for the job that succeeded */
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.job_errors WHERE job_id = 1 "
                                           "AND kind = 'error' AND error IS NOT NULL"), 3);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.job_errors WHERE job_id = 2"), 0);
    n = rt_query1(d.conn, "SELECT string_agg(attempt::text, ',' ORDER BY attempt) FROM rhino.job_errors");
    ck_assert_str_eq(n, "1,2,3");
    free(n);
    /* the dead letter carries the whole history */
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT jsonb_array_length(error_history) FROM rhino.dead_letters "
                                           "WHERE id = 1"), 3);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.dead_letters"), 1);

    /* redriven, it fails three more times: the history grows, nothing is lost */
    rc = rt_ctl(d.dsn, NULL, &out, &err, "retry", "1", NULL);
    ck_assert_msg(rc == 0, "retry exited %d: %s", rc, err);
    free(out);
    free(err);
    rt_daemon_wait(&d, "SELECT count(*) = 6 FROM rhino.job_errors WHERE job_id = 1", 30);
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.dead_letters WHERE jsonb_array_length(error_history) = 6", 30);
    rt_daemon_stop(&d);
    rt_daemon_teardown(&d);
}
END_TEST

/*
 * Two dead letters with one unique key: redriving both at once brings back
 * only the newer (the key allows one live job) and fails nothing.
 */
START_TEST(test_redrive_keeps_one_job_per_unique_key)
{
    rt_daemon_t d;
    char       *out, *err;
    int         rc;

    rt_daemon_setup(&d, NULL);
    rt_exec(d.conn, "INSERT INTO rhino.jobs_done_rows (id, queue, kind, payload, state, priority, attempt, max_attempts,"
                    "                             run_at, created_at, finished_at, unique_key)"
                    " VALUES (101, 'default', 'ok', '{}', 'discarded', 0, 3, 3, now(), now(), now() - interval '2 s', 'k1'),"
                    "        (102, 'default', 'ok', '{}', 'discarded', 0, 3, 3, now(), now(), now() - interval '1 s', 'k1'),"
                    "        (103, 'default', 'ok', '{}', 'discarded', 0, 3, 3, now(), now(), now() - interval '1 s', NULL)");
    rc = rt_ctl(d.dsn, NULL, &out, &err, "retry", "--discarded", NULL);
    ck_assert_msg(rc == 0, "retry exited %d: %s", rc, err);
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs WHERE id IN (102, 103)"), 2);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs_done WHERE id = 101"), 1);
    /* again: the older one stays, its key held by the live job */
    rc = rt_ctl(d.dsn, NULL, &out, &err, "retry", "--discarded", NULL);
    ck_assert_msg(rc == 0, "second retry exited %d: %s", rc, err);
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs_done WHERE id = 101"), 1);
    rt_daemon_teardown(&d);
}
END_TEST

/* ---- cancellation ------------------------------------------------------- */

START_TEST(test_cancel_waiting_job_never_runs)
{
    rt_daemon_t d;
    char       *out, *err, *s;
    int         rc;

    rt_daemon_setup(&d, NULL);
    rt_exec(d.conn, "SELECT rhino.enqueue('ok', run_at => now() + interval '1 hour')");
    rc = rt_ctl(d.dsn, NULL, &out, &err, "cancel", "1", NULL);
    ck_assert_msg(rc == 0, "cancel exited %d: %s", rc, err);
    ck_assert_msg(strstr(out, "cancelled job 1") != NULL, "%s", out);
    free(out);
    free(err);
    /* a second cancel says it is done already, and fails */
    rc = rt_ctl(d.dsn, NULL, &out, &err, "cancel", "1", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "already cancelled") != NULL, "%s", err);
    free(out);
    free(err);
    s = rt_query1(d.conn, "SELECT rhino.cancel(1)");
    ck_assert_str_eq(s, "already cancelled");
    free(s);
    ck_assert_ptr_null(rt_query1(d.conn, "SELECT rhino.cancel(12345)"));
    rt_daemon_teardown(&d);
}
END_TEST

START_TEST(test_cancel_running_cooperative)
{
    rt_daemon_t d;
    char       *out, *err, *s;
    int         rc;

    rt_daemon_setup(&d, "[worker]\ncancel_grace = 30\n");
    rt_exec(d.conn, "SELECT rhino.enqueue('cancellable', max_attempts => 5)");
    rt_daemon_start(&d);
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.jobs WHERE state = 'running'", 30);

    rc = rt_ctl(d.dsn, NULL, &out, &err, "cancel", "1", NULL);
    ck_assert_msg(rc == 0, "cancel exited %d: %s", rc, err);
    ck_assert_msg(strstr(out, "cancellation requested") != NULL, "%s", out);
    free(out);
    free(err);
    /* the handler notices, returns RHINO_RETRY, and the job ends cancelled, not retried */
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.jobs_done WHERE state = 'cancelled'", 20);
    rt_daemon_stop(&d);
    ck_assert_int_eq(runs_of(&d, 1), 1);
    s = rt_query1(d.conn, "SELECT last_error FROM rhino.jobs_done WHERE id = 1");
    ck_assert_str_eq(s, "stopped: cancelled");
    free(s);
    /* the worker was not killed: it stopped by itself; and it counted a cancel, not a discard */
    s = rt_read_file(d.log);
    ck_assert_msg(strstr(s, "killing the worker") == NULL, "%s", s);
    ck_assert_msg(strstr(s, " 0 retried, 0 discarded, 1 cancelled,") != NULL, "%s", s);
    free(s);
    rt_daemon_teardown(&d);
}
END_TEST

START_TEST(test_cancel_running_stubborn_is_killed)
{
    rt_daemon_t d;
    char       *out, *err, *s;
    int         rc;

    rt_daemon_setup(&d, "[worker]\ncancel_grace = 1\n");
    d.allow_errors = 1;
    rt_exec(d.conn, "SELECT rhino.enqueue('stubborn')");
    rt_daemon_start(&d);
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.jobs WHERE state = 'running'", 30);
    rc = rt_ctl(d.dsn, NULL, &out, &err, "cancel", "1", NULL);
    ck_assert_msg(rc == 0, "cancel exited %d: %s", rc, err);
    free(out);
    free(err);
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.jobs_done WHERE state = 'cancelled'", 30);
    /* the respawned worker goes on with other work */
    rt_exec(d.conn, "SELECT rhino.enqueue('ok')");
    rt_daemon_wait(&d, "SELECT count(*) = 1 FROM rhino.jobs_done WHERE state = 'completed'", 30);
    rt_daemon_stop(&d);

    ck_assert_int_eq(runs_of(&d, 1), 1);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.job_errors WHERE job_id = 1 "
                                           "AND kind = 'crash'"), 1);
    s = rt_read_file(d.log);
    ck_assert_msg(strstr(s, "cancel_grace") != NULL, "%s", s);
    free(s);
    rt_daemon_teardown(&d);
}
END_TEST

/*
 * A job claimed in a batch but not started when it is cancelled is skipped:
 * one worker claims both jobs of kind, the first holds it for 3 s, the
 * second is cancelled meanwhile.  For a transactional kind (tx) the two are
 * one group, and only the group's first job went through the check: a later
 * one cancelled while the first ran was run anyway, its writes committed
 * (the table ledger), the job completed.
 */
static void
cancel_claimed_not_started(const char *kind, int tx)
{
    rt_daemon_t d;
    char        sql[160], *out, *err;
    int         rc;

    rt_daemon_setup(&d, "[worker]\nprocesses = 1\n");
    if (tx)
        rt_exec(d.conn, "CREATE TABLE ledger (job_id bigint NOT NULL, attempt int NOT NULL, pid int NOT NULL)");
    snprintf(sql, sizeof(sql), "SELECT rhino.enqueue('%s', '{\"ms\": 3000}'), rhino.enqueue('%s')", kind, kind);
    rt_exec(d.conn, sql);
    rt_daemon_start(&d);
    rt_daemon_wait(&d, "SELECT count(*) = 2 FROM rhino.jobs WHERE state = 'running'", 30);
    rc = rt_ctl(d.dsn, NULL, &out, &err, "cancel", "2", NULL);
    ck_assert_msg(rc == 0, "cancel exited %d: %s", rc, err);
    ck_assert_msg(strstr(out, "cancellation requested") != NULL, "%s", out);
    free(out);
    free(err);
    rt_daemon_wait(&d, "SELECT count(*) = 2 FROM rhino.jobs_done", 30);
    rt_daemon_stop(&d);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs_done WHERE id = 2 "
                                           "AND state = 'cancelled'"), 1);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs_done WHERE id = 1 "
                                           "AND state = 'completed'"), 1);
    if (tx) {
        ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM ledger WHERE job_id = 2"), 0);
        ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM ledger WHERE job_id = 1"), 1);
    } else {
        ck_assert_int_eq(runs_of(&d, 2), 0);
    }
    /* one worker: its exit line counts the skipped job as cancelled, not discarded */
    {
        char *log = rt_read_file(d.log);

        ck_assert_msg(log && strstr(log, " 1 completed, 0 retried, 0 discarded, 1 cancelled,"), "%s", log ? log : "");
        free(log);
    }
    rt_daemon_teardown(&d);
}

START_TEST(test_cancel_claimed_not_started)
{
    cancel_claimed_not_started("ok", 0);
}
END_TEST

START_TEST(test_cancel_claimed_not_started_tx)
{
    cancel_claimed_not_started("tx_ledger", 1);
}
END_TEST

/*
 * A transactional handler that ends the worker's transaction (here
 * ROLLBACK): the group's earlier job lost its writes, and used to be
 * recorded completed all the same.  Now the misusing job is discarded with
 * an error saying why, the earlier one is retried and completes with its
 * write, the later one runs in a new transaction.
 */
START_TEST(test_tx_handler_ending_the_transaction)
{
    rt_daemon_t d;
    char       *s;

    rt_daemon_setup(&d, "[worker]\nprocesses = 1\n");
    d.allow_errors = 1;         /* the misuse is logged as an error */
    rt_exec(d.conn, "CREATE TABLE ledger (job_id bigint NOT NULL, attempt int NOT NULL, pid int NOT NULL)");
    rt_exec(d.conn, "SELECT rhino.enqueue('tx_ledger', p::jsonb) FROM unnest(ARRAY['{}',"
                    " '{\"fault\": \"rollback\"}', '{}']) p");
    rt_daemon_start(&d);
    rt_daemon_wait(&d, "SELECT count(*) = 3 FROM rhino.jobs_done", 30);
    rt_daemon_stop(&d);
    s = rt_query1(d.conn, "SELECT state || ': ' || last_error FROM rhino.jobs_done WHERE id = 2");
    ck_assert_msg(strstr(s, "discarded: the handler ended the worker's transaction") == s, "%s", s);
    free(s);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs_done WHERE id IN (1, 3)"
                                           " AND state = 'completed'"), 2);
    /* every completed job has its write, exactly once */
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs_done d WHERE state = 'completed'"
                                           " AND (SELECT count(*) FROM ledger l WHERE l.job_id = d.id) <> 1"), 0);
    rt_daemon_teardown(&d);
}
END_TEST

static Suite *
features_suite(void)
{
    Suite *s = suite_create("features");
    TCase *tc = tcase_create("features");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_notify_wakes_idle_worker);
    tcase_add_test(tc, test_notify_only_for_served_queues);
    tcase_add_test(tc, test_snooze_reruns_without_an_error);
    tcase_add_test(tc, test_absurd_outcomes_do_not_block_the_batch);
    tcase_add_test(tc, test_data_exception_in_finalize_is_isolated);
    tcase_add_test(tc, test_data_exception_in_the_drain);
    tcase_add_test(tc, test_data_exception_in_a_transactional_group);
    tcase_add_test(tc, test_extend_without_deadline_keeps_none);
    tcase_add_test(tc, test_every_error_is_kept_and_redrivable);
    tcase_add_test(tc, test_redrive_keeps_one_job_per_unique_key);
    tcase_add_test(tc, test_cancel_waiting_job_never_runs);
    tcase_add_test(tc, test_cancel_running_cooperative);
    tcase_add_test(tc, test_cancel_running_stubborn_is_killed);
    tcase_add_test(tc, test_cancel_claimed_not_started);
    tcase_add_test(tc, test_cancel_claimed_not_started_tx);
    tcase_add_test(tc, test_tx_handler_ending_the_transaction);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(features_suite());
    int      failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
