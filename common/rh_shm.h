/* rh_shm.h - the master's process table, shared with its children. */
#ifndef RH_SHM_H
#define RH_SHM_H

#include <stdint.h>

#include "rh_config.h"
#include "rh_metrics.h"

/*
 * One entry per worker slot.
 *
 * Written by the master: pid, generation, min_live, stopped.  min_live is
 * the lowest generation of the slot that may still be running: the master
 * raises it when a child exits and sets generation before fork(), so a
 * worker row with a lower generation is certainly a dead process.
 *
 * Written by the worker: the job its handler is running (0 = none) and that
 * job's deadline on CLOCK_MONOTONIC, which the master enforces and
 * rhino_job_extend() moves.
 */
typedef struct {
    int     pid;
    int     generation;
    int     min_live;
    int     stopped;            /* seen stopped (SIGSTOP): its lease is not renewed */
    int     ready;              /* written by the worker once connected and registered */
    int     idle;               /* the worker waits for work: the master may wake it (SIGUSR1) */
    int     limited;            /* written by the reaper: a queue of [worker] queues has limits, so
                                   the worker claims with RH_STMT_CLAIM_LIMITED (reaper/rh_limits.c) */
    int64_t job_id;
    int     job_attempt;
    double  deadline;           /* 0 = no deadline */
    /*
     * Written by the reaper: the running job whose cancellation was asked
     * for (rhino.cancel), and when it first saw it (rh_mono_now).  The
     * handler reads it (rhino_job_cancelled); the master stops the worker
     * once [worker] cancel_grace has passed and the job still runs.
     */
    int64_t cancel_job;
    double  cancel_at;
} rh_shm_slot_t;

/*
 * A worker died while a handler ran: the master reports the job to the
 * reaper.  interrupted: the master killed it itself at the stop's deadline
 * (rh_master.c, RH_KILL_STOP), so the job is handed back without a crash
 * counted (RH_STMT_INTERRUPTED); otherwise a crash (RH_STMT_CRASHED).
 */
typedef struct {
    int64_t job_id;
    int     attempt;
    int     interrupted;
    char    why[120];
} rh_shm_report_t;

#define RH_SHM_REPORTS 1024
#define RH_SHM_CANCELS 256

typedef struct {
    /*
     * Set by the master just before the SIGTERM that stops the reaper for
     * good, once no worker is left: only then does that SIGTERM mean a last
     * pass and the node marked stopped.  A reaper stopped by a roll whose
     * SIGTERM is handled after the shutdown began must not end the workers'
     * rows while they still drain.
     */
    int             reaper_last;
    int             nslots;
    rh_shm_slot_t   slot[RH_MAX_PROCESSES];
    /* a ring: the master writes at head, the reaper consumes from tail */
    uint32_t        report_head;
    uint32_t        report_tail;
    rh_shm_report_t reports[RH_SHM_REPORTS];
    /*
     * Written by the reaper: jobs whose cancellation was asked for while
     * claimed by a worker of this node but not started; a worker skips them
     * (a ring, newest at cancel_head - 1).
     */
    uint32_t        cancel_head;
    /*
     * Written by the master: one more for every new-job notification of
     * our queues.  A worker whose claim came back empty claims again instead
     * of idling if it moved since that claim was sent (a notification the
     * master could not give to an idle worker).
     */
    uint64_t        notify_seq;
    int64_t         cancel_ids[RH_SHM_CANCELS];
    /* the reaper's readiness: 0 when (re)started, 1 after its first pass on a live connection */
    int             reaper_ready;
    /* counters and histograms for GET /metrics (rh_metrics.h) */
    rh_metrics_t    metrics;
} rh_shm_t;

rh_shm_t *rh_shm_create(void);   /* anonymous MAP_SHARED, inherited across fork */

/* Is job id in the ring of cancelled, claimed-but-unstarted jobs (cancel_ids)? */
int       rh_shm_cancel_listed(rh_shm_t *shm, int64_t id);
/* Add it, unless listed (the reaper, the ring's one writer). */
void      rh_shm_cancel_add(rh_shm_t *shm, int64_t id);
double    rh_mono_now(void);     /* CLOCK_MONOTONIC in seconds, the same clock in every process */

#define rh_shm_store(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define rh_shm_load(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
/* the same for doubles, which __atomic_*_n does not take */
#define rh_shm_load_d(p)   __extension__ ({ double v_; __atomic_load((p), &v_, __ATOMIC_ACQUIRE); v_; })
#define rh_shm_store_d(p, v) \
    do { double v_ = (v); __atomic_store((p), &v_, __ATOMIC_RELEASE); } while (0)

#endif
