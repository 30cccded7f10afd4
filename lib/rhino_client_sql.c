/*
 * rhino_client_sql.c - librhino's statement table: all SQL the producer
 * library sends.
 *
 * A table of its own rather than rows of common/rh_sql.c: librhino is
 * linked into applications (and handler .so files), and common/ is the
 * daemon's code, built for the daemon and rhinoctl.  These few statements
 * depend only on the SQL interface (rhino.enqueue_job, rhino.jobs), which
 * the migrations keep stable, not on any C of the daemon.
 *
 * As in common/rh_sql.c: parameters are always bound, statements are sent
 * unnamed (PgBouncer in transaction mode works), no session state.
 */
#include "rhino_client_sql.h"

/*
 * The arguments of rhino.enqueue_job as librhino sends them: a NULL where
 * an option was left at zero, so that the function's defaults apply; run_at
 * as ISO 8601 with offset (parsed the same under any DateStyle); timeout
 * and unique_for as seconds.
 */
static const rhc_stmt_t rhc_stmts[RHC_STMT__COUNT] = {

    [RHC_STMT_ENQUEUE] = { RHC_STMT_ENQUEUE,
        "SELECT id, existing FROM rhino.enqueue_job($1, $2::jsonb, $3, $4::timestamptz, $5::int, $6::int,"
        "                                           $7::float8, $8, $9::float8 * interval '1 second', $10)",
        10 },

    /*
     * Many jobs with unique keys: one statement over ten arrays.  Each row
     * goes through rhino.enqueue_job, in order, so a key repeated within the
     * batch yields the first row's id, and everything the single enqueue
     * guarantees (race safety, windows, wake-ups) holds per row.
     */
    [RHC_STMT_ENQUEUE_MANY] = { RHC_STMT_ENQUEUE_MANY,
        "SELECT e.id, e.existing"
        "  FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::timestamptz[], $5::int[], $6::int[],"
        "              $7::float8[], $8::text[], $9::float8[], $10::text[])"
        "       WITH ORDINALITY AS a(kind, payload, queue, run_at, priority, max_attempts, timeout,"
        "                            unique_key, unique_for, concurrency_key, n)"
        " CROSS JOIN LATERAL rhino.enqueue_job(a.kind, a.payload, a.queue, a.run_at, a.priority, a.max_attempts,"
        "                                      a.timeout, a.unique_key, a.unique_for * interval '1 second',"
        "                                      a.concurrency_key) AS e"
        " ORDER BY a.n",
        10 },

    /*
     * Before a COPY: the server's clock (which jobs are due now, and so
     * 'available' rather than 'scheduled') and, when the caller wants them,
     * $1 ids from the jobs' own identity sequence, so that the COPY can
     * name them.  Always at least one row.
     */
    [RHC_STMT_PREPARE_COPY] = { RHC_STMT_PREPARE_COPY,
        "SELECT c.now, s.id"
        "  FROM (SELECT extract(epoch FROM clock_timestamp())::float8) AS c(now)"
        "  LEFT JOIN LATERAL (SELECT nextval('rhino.jobs_id_seq') FROM generate_series(1, $1::int)) AS s(id)"
        "    ON true",
        1 },

    /*
     * The COPY fast path (no unique keys), with or without ids and run_at:
     * a column left out takes its default (a new id, now(), 'available').
     */
    [RHC_STMT_COPY] = { RHC_STMT_COPY,
        "COPY rhino.jobs (kind, queue, payload, priority, max_attempts, timeout, concurrency_key) FROM STDIN",
        0 },
    [RHC_STMT_COPY_ID] = { RHC_STMT_COPY_ID,
        "COPY rhino.jobs (id, kind, queue, payload, priority, max_attempts, timeout, concurrency_key) FROM STDIN",
        0 },
    [RHC_STMT_COPY_RUN_AT] = { RHC_STMT_COPY_RUN_AT,
        "COPY rhino.jobs (kind, queue, payload, priority, max_attempts, timeout, concurrency_key, run_at, state)"
        " FROM STDIN",
        0 },
    [RHC_STMT_COPY_ID_RUN_AT] = { RHC_STMT_COPY_ID_RUN_AT,
        "COPY rhino.jobs (id, kind, queue, payload, priority, max_attempts, timeout, concurrency_key, run_at,"
        "                 state) FROM STDIN",
        0 },

    /*
     * After a COPY: wake the daemons listening on rhino_jobs, once per queue
     * that received jobs due now, as rhino.enqueue does per job.
     */
    [RHC_STMT_NOTIFY] = { RHC_STMT_NOTIFY,
        "SELECT rhino.wake(q) FROM unnest($1::text[]) AS q",
        1 },
};

const rhc_stmt_t *
rhino_client_sql(rhc_stmt_id_t id)
{
    return &rhc_stmts[id];
}
