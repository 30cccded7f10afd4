/*
 * enqueue.c - an example producer: enqueue Rhino jobs from C with librhino,
 * in the same transaction as the application's own writes.
 *
 *     cc -o enqueue enqueue.c $(pkg-config --cflags --libs rhino-client)
 *     RHINO_DSN=postgres://app@db/app ./enqueue 1000
 *
 * It enqueues, in one transaction: one "send_invoice" job with a unique
 * key (run it twice while the first job waits, and the second run reports
 * the existing job), one "report" job for an hour from now, and N "hello"
 * jobs through the COPY fast path.  Nothing is enqueued unless the COMMIT
 * succeeds; an error rolls everything back.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <libpq-fe.h>
#include <rhino-client.h>

/* Our own transaction control: librhino never begins or commits. */
static int
run(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    int       ok = PQresultStatus(res) == PGRES_COMMAND_OK;

    if (!ok)
        fprintf(stderr, "enqueue: %s: %s", sql, PQerrorMessage(conn));
    PQclear(res);
    return ok ? 0 : -1;
}

int
main(int argc, char **argv)
{
    const char     *dsn = getenv("RHINO_DSN");
    long            n = argc > 1 ? strtol(argv[1], NULL, 10) : 100;
    PGconn         *conn;
    rhino_error     err;
    int64_t         id;
    bool            existing;
    rhino_job_spec *jobs;
    int64_t        *ids;
    char          (*payloads)[32];
    double          in_an_hour = (double) time(NULL) + 3600;

    if (n < 0 || n > 10000000) {
        fprintf(stderr, "usage: enqueue [COUNT]   (0 to 10000000 hello jobs; RHINO_DSN says where)\n");
        return 2;
    }
    /* libpq's defaults (PGHOST, PGDATABASE, ~/.pgpass) when RHINO_DSN is not set */
    conn = PQconnectdb(dsn ? dsn : "");
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "enqueue: cannot connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return 1;
    }

    jobs = calloc((size_t) n + 1, sizeof(*jobs));
    ids = calloc((size_t) n + 1, sizeof(*ids));
    payloads = calloc((size_t) n + 1, sizeof(*payloads));
    if (jobs == NULL || ids == NULL || payloads == NULL) {
        fprintf(stderr, "enqueue: out of memory\n");
        return 1;
    }
    for (long i = 0; i < n; i++) {
        snprintf(payloads[i], sizeof(payloads[i]), "{\"n\": %ld}", i);
        jobs[i].kind = "hello";
        jobs[i].payload = payloads[i];
        jobs[i].opts.queue = "default";     /* every other option: its default */
    }

    if (run(conn, "BEGIN") < 0)
        goto fail;

    /* ... the application's own INSERTs would go here, in the same transaction ... */

    {
        /* at most one live invoice job per invoice: a repeat returns the same id */
        rhino_enqueue_opts o = { .queue = "mail", .unique_key = "invoice-42", .max_attempts = 5 };

        if (rhino_enqueue(conn, "send_invoice", "{\"invoice\": 42}", &o, &id, &existing, &err) < 0)
            goto rhino_fail;
        printf("send_invoice: job %" PRId64 " (%s)\n", id, existing ? "existing" : "new");
    }
    {
        /* scheduled: the reaper makes it available in an hour */
        rhino_enqueue_opts o = { .run_at = &in_an_hour, .priority = 5 };

        if (rhino_enqueue(conn, "report", NULL, &o, &id, NULL, &err) < 0)
            goto rhino_fail;
        printf("report: job %" PRId64 ", runs in an hour\n", id);
    }
    if (n > 0) {
        /* no unique keys: one COPY */
        if (rhino_enqueue_many(conn, jobs, (size_t) n, ids, NULL, &err) < 0)
            goto rhino_fail;
        printf("hello: %ld jobs, ids %" PRId64 "..%" PRId64 "\n", n, ids[0], ids[n - 1]);
    }

    if (run(conn, "COMMIT") < 0)
        goto fail;
    printf("committed\n");
    PQfinish(conn);
    free(jobs);
    free(ids);
    free(payloads);
    return 0;

rhino_fail:
    fprintf(stderr, "enqueue: %s%s%s\n", err.message, *err.sqlstate ? " SQLSTATE " : "", err.sqlstate);
fail:
    /* the transaction (if it began) dies with the connection: nothing was enqueued */
    PQfinish(conn);
    free(jobs);
    free(ids);
    free(payloads);
    return 1;
}
