/* rh_job.h - the job as a handler sees it (struct behind the opaque rhino_job). */
#ifndef RH_JOB_H
#define RH_JOB_H

#define RHINO_INTERNAL 1
#include "rhino.h"
#include "rh_shm.h"

#define RH_JOB_ERROR_MAX 2000

struct rhino_job {
    int64_t     id;
    int         attempt;
    int         max_attempts;
    const char *queue;
    const char *kind;
    const char *payload;
    size_t      payload_len;
    char        error[RH_JOB_ERROR_MAX + 1];
    int         has_error;
    double      timeout;        /* seconds; 0 = none */
    int         errors;         /* failed runs before this one */
    rh_shm_slot_t *slot;        /* where the deadline lives; NULL outside a worker */
    struct pg_conn *conn;       /* transactional handlers only */
    double      snooze;         /* seconds, set by rhino_job_snooze(); < 0 = not called */
};

#endif
