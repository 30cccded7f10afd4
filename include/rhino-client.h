/*
 * rhino-client.h - librhino, the C producer API of Rhino: enqueue jobs on
 * your own libpq connection, inside your own transaction.
 *
 *     #include <rhino-client.h>
 *
 *     rhino_enqueue_opts o = { .queue = "mail", .unique_key = "invoice-42" };
 *     int64_t            id;
 *     bool               existing;
 *     rhino_error        err;
 *
 *     PQclear(PQexec(conn, "BEGIN"));
 *     ... your own writes ...
 *     if (rhino_enqueue(conn, "send_invoice", "{\"invoice\": 42}", &o, &id, &existing, &err) < 0)
 *         fprintf(stderr, "%s\n", err.message);      (then ROLLBACK)
 *     PQclear(PQexec(conn, "COMMIT"));                the job exists from here on
 *
 * Build:  cc app.c $(pkg-config --cflags --libs rhino-client)
 *
 * The rules:
 *
 *   - Every call runs on the connection you pass and never begins, commits
 *     or rolls back a transaction: inside your transaction, the jobs commit
 *     or vanish with your own writes; outside one (autocommit), each
 *     statement commits by itself.
 *   - The connection must be open, idle or in a transaction block that has
 *     not failed, and not in pipeline mode.  It is left as it was found, save
 *     for what the statements do.
 *   - Calls return 0 on success and -1 on failure, with *err filled in (err
 *     may be NULL).  An error found before anything was sent (a bad argument,
 *     a payload that is not JSON) leaves your transaction untouched and has
 *     an empty sqlstate; an error from the server has its SQLSTATE and, as
 *     any failed statement, has aborted your transaction: roll it back.
 *     Messages never contain the DSN, a password or a payload.
 *   - Zeroed options mean the defaults of rhino.enqueue (sql/003_unique.sql).
 *   - Not thread-safe per connection (libpq connections never are); distinct
 *     connections may be used from distinct threads.
 *
 * librhino is a static library built with -fPIC, so it also links into a
 * handler .so: a transactional handler may enqueue follow-up jobs on
 * rhino_job_conn(job), atomically with its own completion.
 */
#ifndef RHINO_CLIENT_H
#define RHINO_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when a struct below or the meaning of a call changes. */
#define RHINO_CLIENT_VERSION 1

/*
 * How to enqueue a job.  Zero (or NULL) in every field means the default;
 * initialize with `rhino_enqueue_opts o = { 0 };` or designated initializers.
 */
typedef struct rhino_enqueue_opts {
    const char   *queue;            /* NULL: "default"; 1 to 255 characters */
    const double *run_at;           /* seconds since the Epoch (UTC), fractions allowed;
                                       NULL: now.  In the future: the job is scheduled */
    int           priority;         /* -32768..32767, lower runs first; default 0 */
    int           max_attempts;     /* failed runs before the job is discarded; 0: 25 */
    double        timeout;          /* the handler's deadline in seconds; 0: [worker] job_timeout */
    const char   *unique_key;       /* NULL: none.  Else no second live job (available,
                                       scheduled, running, retryable) with this key: the
                                       live one's id is returned, *existing = true.
                                       1 to 512 characters */
    double        unique_for;       /* seconds; 0: none.  With unique_key: a throttle
                                       window, at most one job with the key per period,
                                       finished or not */
    const char   *concurrency_key;  /* NULL: none; the key of per-key concurrency limits */
} rhino_enqueue_opts;

/* One job of rhino_enqueue_many. */
typedef struct rhino_job_spec {
    const char         *kind;       /* the handler's kind, 1 to 255 characters */
    const char         *payload;    /* JSON text; NULL: {} */
    rhino_enqueue_opts  opts;
} rhino_job_spec;

/* Why a call failed. */
typedef struct rhino_error {
    char sqlstate[6];               /* the server's SQLSTATE ("40001"...), "" if none */
    char message[512];              /* "rhino_enqueue_many: jobs[3]: payload is not valid JSON ..." */
} rhino_error;

/*
 * Enqueue one job: kind, payload (JSON text, NULL for {}), options (NULL for
 * the defaults).  *id gets the job's id, *existing whether that is an
 * existing job (unique_key, unique_for) rather than a new one; either
 * pointer may be NULL.  One statement (rhino.enqueue_job), one round trip.
 */
int rhino_enqueue(PGconn *conn, const char *kind, const char *payload, const rhino_enqueue_opts *opts,
                  int64_t *id, bool *existing, rhino_error *err);

/*
 * Enqueue n jobs.  ids and existing, if not NULL, have room for n entries
 * and receive them in the order of jobs.
 *
 * Without any unique_key the jobs go in by COPY: the fast path, one round
 * trip for the data plus one for the ids (only if ids is not NULL) and one
 * for the wake-ups; *existing is false for all.  With a unique_key on any
 * job, all of them go through rhino.enqueue_job in one statement over
 * arrays (unnest), so that duplicates within the batch and against the
 * database both return the id of the one live job.
 *
 * Outside a transaction the COPY commits by itself; the wake-up follows in
 * a statement of its own.  Inside one everything commits together.
 */
int rhino_enqueue_many(PGconn *conn, const rhino_job_spec *jobs, size_t n, int64_t *ids, bool *existing,
                       rhino_error *err);

#ifdef __cplusplus
}
#endif

#endif
