/*
 * rh_job.c - the accessors of the handler ABI.  The rhino executable exports
 * these (common/rhino.sym) so that a handler .so resolves them at dlopen.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "rh_job.h"

int64_t     rhino_job_id(const rhino_job *job)           { return job->id; }
int         rhino_job_attempt(const rhino_job *job)      { return job->attempt; }
int         rhino_job_max_attempts(const rhino_job *job) { return job->max_attempts; }
const char *rhino_job_kind(const rhino_job *job)         { return job->kind; }
const char *rhino_job_queue(const rhino_job *job)        { return job->queue; }
const char *rhino_job_payload(const rhino_job *job)      { return job->payload; }
size_t      rhino_job_payload_len(const rhino_job *job)  { return job->payload_len; }

void
rhino_job_set_error(rhino_job *job, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(job->error, sizeof(job->error), fmt, ap);
    va_end(ap);
    job->has_error = 1;
}

/*
 * A deadline of 0 means none (job_timeout = 0, or a job timeout of 0):
 * extending it would give the job a deadline it never had, and the
 * master would kill the worker when it passed.
 */
void
rhino_job_extend(rhino_job *job, double seconds)
{
    double d, cur;

    if (job->slot == NULL || !(seconds > 0))
        return;
    cur = rh_shm_load_d(&job->slot->deadline);
    d = rh_mono_now() + seconds;
    if (cur > 0 && d > cur)
        rh_shm_store_d(&job->slot->deadline, d);
}

struct pg_conn *
rhino_job_conn(rhino_job *job)
{
    return job->conn;
}

/*
 * The delay goes to the finalize as make_interval(secs => delay), which
 * fails (SQLSTATE 22008) on inf, NaN and anything past ~9.2e12 s, and with
 * it the finalize of every job of the batch, each time it is replayed.  So
 * NaN and negatives mean now, and the longest delay is RHINO_SNOOZE_MAX.
 */
int
rhino_job_snooze(rhino_job *job, double seconds)
{
    job->snooze = !(seconds > 0) ? 0 : seconds > RHINO_SNOOZE_MAX ? RHINO_SNOOZE_MAX : seconds;
    return RHINO_SNOOZE;
}

int
rhino_job_cancelled(const rhino_job *job)
{
    return job->slot != NULL && job->id != 0 && rh_shm_load(&job->slot->cancel_job) == job->id;
}
