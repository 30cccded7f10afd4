/*
 * test_handlers.c - handlers the integration tests run.  Every run of every
 * handler appends "kind id attempt pid\n" to the file named by
 * RHINO_TEST_LEDGER (one O_APPEND write, atomic across processes), so a test
 * can count how many times each job really ran.
 */
#include <fcntl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rhino.h>

static void
ledger(rhino_job *job)
{
    const char *path = getenv("RHINO_TEST_LEDGER");
    char        line[256];
    int         fd, n;

    if (path == NULL)
        return;
    n = snprintf(line, sizeof(line), "%s %lld %d %d\n", rhino_job_kind(job), (long long) rhino_job_id(job),
                 rhino_job_attempt(job), (int) getpid());
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0)
        return;
    if (write(fd, line, (size_t) n) != n) {
        /* the test will see the missing line */
    }
    close(fd);
}

/* {"ms": N} in the payload: sleep that long (to keep jobs in flight). */
static void
maybe_sleep(rhino_job *job)
{
    const char *p = strstr(rhino_job_payload(job), "\"ms\"");
    struct timespec ts;
    long ms;

    if (p == NULL || (p = strchr(p, ':')) == NULL)
        return;
    ms = strtol(p + 1, NULL, 10);
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    /* the whole time: a signal to the worker (SIGTERM for a drain) must not end the job early */
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int
ok(rhino_job *job)
{
    maybe_sleep(job);
    ledger(job);
    return RHINO_OK;
}
RHINO_HANDLER("ok", ok);

/* {"ms": N}: sleeps on the first attempt only, so that a test can kill the worker mid-job and see the retry finish. */
static int
slow_once(rhino_job *job)
{
    if (rhino_job_attempt(job) == 1)
        maybe_sleep(job);
    ledger(job);
    return RHINO_OK;
}
RHINO_HANDLER("slow_once", slow_once);

static int
retry_twice(rhino_job *job)
{
    ledger(job);
    if (rhino_job_attempt(job) < 3) {
        rhino_job_set_error(job, "attempt %d failed on purpose", rhino_job_attempt(job));
        return RHINO_RETRY;
    }
    return RHINO_OK;
}
RHINO_HANDLER("retry_twice", retry_twice);

static int
always_fail(rhino_job *job)
{
    ledger(job);
    rhino_job_set_error(job, "always fails (attempt %d)", rhino_job_attempt(job));
    return RHINO_RETRY;
}
RHINO_HANDLER("always_fail", always_fail);

static int
discard(rhino_job *job)
{
    ledger(job);
    rhino_job_set_error(job, "payload refused: %.40s", rhino_job_payload(job));
    return RHINO_DISCARD;
}
RHINO_HANDLER("discard", discard);

/* Returns a code outside the ABI: the worker must treat it as a retryable failure. */
static int
bogus_code(rhino_job *job)
{
    ledger(job);
    return 42;
}
RHINO_HANDLER("bogus_code", bogus_code);

/* Invalid UTF-8 in the error text must not break the finalize of the batch. */
static int
bad_utf8_error(rhino_job *job)
{
    ledger(job);
    rhino_job_set_error(job, "bad bytes: \xff\xfe\xc3 end");
    return RHINO_DISCARD;
}
RHINO_HANDLER("bad_utf8_error", bad_utf8_error);

/*
 * What a lax UTF-8 check lets through and PostgreSQL rejects (SQLSTATE
 * 22021): a UTF-16 surrogate, overlong 3- and 4-byte forms, a code point
 * above U+10FFFF, an F5 lead byte; then valid 2- and 3-byte characters.
 * (check_daemon.c pins bad_utf8_error's exact text, hence a kind of its own.)
 */
static int
bad_utf8_strict(rhino_job *job)
{
    ledger(job);
    rhino_job_set_error(job, "surrogate \xed\xa0\x80 overlong \xe0\x80\x80 \xf0\x80\x80\x80"
                        " too high \xf4\x90\x80\x80 \xf5\x80\x80\x80 ok \xc3\xa9\xe2\x82\xac");
    return RHINO_DISCARD;
}
RHINO_HANDLER("bad_utf8_strict", bad_utf8_strict);

/* Valid UTF-8 that a LATIN1 database cannot store (SQLSTATE 22P05 with client_encoding UTF8). */
static int
euro_error(rhino_job *job)
{
    ledger(job);
    rhino_job_set_error(job, "costs 5 \xe2\x82\xac");
    return RHINO_DISCARD;
}
RHINO_HANDLER("euro_error", euro_error);

/*
 * Snoozes once for {"secs": "S"} seconds (strtod: "inf", "nan", "-5",
 * "1e13"...), an absurd delay that must neither break the batch's finalize
 * nor be lost; its second run completes.
 */
static int
snooze_absurd(rhino_job *job)
{
    const char *p = strstr(rhino_job_payload(job), "\"secs\"");

    ledger(job);
    if (rhino_job_attempt(job) > 1 || p == NULL || (p = strchr(p + 6, '"')) == NULL)
        return RHINO_OK;
    return rhino_job_snooze(job, strtod(p + 1, NULL));
}
RHINO_HANDLER("snooze_absurd", snooze_absurd);

/*
 * The transactional ledger handler of the fault suite: writes (job_id,
 * attempt, pid) into the table "ledger" on the worker's connection, inside
 * the transaction that completes the job.  A ledger with exactly one row
 * per job proves exactly-once committed effects.  The payload can ask for
 * a pause ({"ms": N}, after the insert, so the transaction is open) or a
 * fault: {"fault": "segv" | "abort" | "loop" | "sql" | "commit"}; {"euro"}
 * discards the job with an error text a LATIN1 database cannot store.
 */
#include <signal.h>
#include <libpq-fe.h>

static int
tx_ledger(rhino_job *job)
{
    PGconn     *conn = rhino_job_conn(job);
    const char *payload = rhino_job_payload(job);
    char        id[32], attempt[16], pid[16];
    const char *params[3] = { id, attempt, pid };
    PGresult   *res;

    if (conn == NULL) {
        rhino_job_set_error(job, "tx_ledger: no connection: not run as a transactional handler");
        return RHINO_DISCARD;
    }
    snprintf(id, sizeof(id), "%lld", (long long) rhino_job_id(job));
    snprintf(attempt, sizeof(attempt), "%d", rhino_job_attempt(job));
    snprintf(pid, sizeof(pid), "%d", (int) getpid());
    res = PQexecParams(conn, "INSERT INTO ledger (job_id, attempt, pid) VALUES ($1, $2, $3)", 3, NULL, params,
                       NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rhino_job_set_error(job, "ledger insert failed: %s", PQresultErrorMessage(res));
        PQclear(res);
        return RHINO_RETRY;
    }
    PQclear(res);
    maybe_sleep(job);
    if (strstr(payload, "\"segv\"")) {
        /* the default action: under ASan its SEGV handler would report this deliberate crash */
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    } else if (strstr(payload, "\"abort\"")) {
        abort();
    } else if (strstr(payload, "\"loop\"")) {
        for (;;)
            pause();
    } else if (strstr(payload, "\"sql\"") && rhino_job_attempt(job) == 1) {
        /* a failing statement: its job's writes must roll back, and the job retry */
        PQclear(PQexec(conn, "SELECT 1/0"));
        return RHINO_OK;
    } else if (strstr(payload, "\"commit\"")) {
        PQclear(PQexec(conn, "COMMIT"));
        return RHINO_OK;
    } else if (strstr(payload, "\"rollback\"") && rhino_job_attempt(job) == 1) {
        PQclear(PQexec(conn, "ROLLBACK"));
        return RHINO_OK;
    } else if (strstr(payload, "\"euro\"")) {
        rhino_job_set_error(job, "costs 5 \xe2\x82\xac");
        return RHINO_DISCARD;
    }
    return RHINO_OK;
}
RHINO_TX_HANDLER("tx_ledger", tx_ledger);

/* Extends its own deadline, then outlives the configured job_timeout. */
static int
extends(rhino_job *job)
{
    struct timespec ts = { 1, 500000000L };

    rhino_job_extend(job, 5);
    nanosleep(&ts, NULL);
    ledger(job);
    return RHINO_OK;
}
RHINO_HANDLER("extends", extends);

/* Extends its deadline by 1 s, then works for 2.5 s: fine for a job that had no deadline. */
static int
extend_short(rhino_job *job)
{
    struct timespec ts = { 2, 500000000L };

    rhino_job_extend(job, 1);
    nanosleep(&ts, NULL);
    ledger(job);
    return RHINO_OK;
}
RHINO_HANDLER("extend_short", extend_short);

/* Snoozes (0.2 s) on its first two claims, then completes: attempt 3, no error counted. */
static int
snooze_twice(rhino_job *job)
{
    ledger(job);
    if (rhino_job_attempt(job) < 3)
        return rhino_job_snooze(job, 0.2);
    return RHINO_OK;
}
RHINO_HANDLER("snooze_twice", snooze_twice);

/* Runs until someone cancels it (at most 60 s), then gives up as a failure. */
static int
cancellable(rhino_job *job)
{
    struct timespec ts = { 0, 20000000L };

    ledger(job);
    for (int i = 0; i < 3000 && !rhino_job_cancelled(job); i++)
        nanosleep(&ts, NULL);
    if (!rhino_job_cancelled(job))
        return RHINO_OK;
    rhino_job_set_error(job, "stopped: cancelled");
    return RHINO_RETRY;
}
RHINO_HANDLER("cancellable", cancellable);

/* Ignores cancellation: sleeps 60 s, for the worker to be killed after cancel_grace. */
static int
stubborn(rhino_job *job)
{
    struct timespec ts = { 60, 0 };

    ledger(job);
    nanosleep(&ts, NULL);
    return RHINO_OK;
}
RHINO_HANDLER("stubborn", stubborn);
