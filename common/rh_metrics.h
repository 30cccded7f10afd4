/*
 * rh_metrics.h - counters and histograms in shared memory: written by the
 * workers and the reaper with relaxed atomics, read (and rendered in the
 * Prometheus text format) by the master, which has no database connection.
 */
#ifndef RH_METRICS_H
#define RH_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "rh_config.h"

/* Histogram buckets: upper bounds in seconds; one more bucket counts +Inf. */
#define RH_HIST_NBOUNDS 14
#define RH_HIST_NBUCKETS (RH_HIST_NBOUNDS + 1)
extern const double rh_hist_bounds[RH_HIST_NBOUNDS];

typedef struct {
    uint64_t bucket[RH_HIST_NBUCKETS];  /* not cumulative; the last one is +Inf */
    uint64_t sum_ns;                    /* sum of the observations, nanoseconds */
} rh_hist_t;

typedef enum {
    RH_HIST_CLAIM = 0,      /* claim round trip: sent until its segment's sync */
    RH_HIST_FINALIZE,       /* finalize round trip */
    RH_HIST_RUN,            /* a handler's run time */
    RH_HIST__COUNT
} rh_hist_id_t;

typedef enum {
    RH_CNT_CLAIMED = 0,
    RH_CNT_COMPLETED,
    RH_CNT_RETRIED,
    RH_CNT_DISCARDED,
    RH_CNT_STALE,           /* finalizes rejected: the job had been rescued and claimed again */
    RH_CNT_SNOOZED,         /* RHINO_SNOOZE: run again later, no error counted */
    RH_CNT_CANCELLED,       /* recorded cancelled: not run, or stopped, after rhino.cancel */
    RH_CNT__COUNT
} rh_counter_id_t;

/*
 * One (queue, kind) pair.  Names are truncated to 63 bytes.  state: 0 free,
 * 1 being filled by a worker, 2 ready (names are immutable from then on).
 */
#define RH_METRIC_NAME 64
#define RH_METRIC_KEYS 256
typedef struct {
    uint32_t state;
    char     queue[RH_METRIC_NAME];
    char     kind[RH_METRIC_NAME];
    uint64_t count[RH_CNT__COUNT];
} rh_metric_key_t;

/* Queue depth, refreshed by the reaper (seqlock: seq is odd while it writes). */
#define RH_METRIC_QUEUES 256
typedef struct {
    char    name[RH_METRIC_NAME];
    int64_t depth;              /* available jobs */
    double  oldest_age;         /* seconds since the run_at of the oldest available job */
} rh_metric_queue_t;

typedef struct {
    /* (queue, kind) counters; when the table is full, `other` counts (_other, _other) */
    rh_metric_key_t keys[RH_METRIC_KEYS];
    rh_metric_key_t other;
    /* per worker slot, summed by the master */
    rh_hist_t       hist[RH_MAX_PROCESSES][RH_HIST__COUNT];
    /* written by the master */
    uint64_t        restarts;       /* children restarted after dying on their own */
    uint64_t        crashes;        /* workers that died while a handler ran */
    uint64_t        timeouts;       /* workers killed because a handler passed its deadline */
    /* written by the reaper */
    uint64_t        rescued;        /* jobs made available again after their worker died */
    /* written by the workers */
    uint64_t        round_trips;    /* rounds sent to the database, each one network round trip */
    /* written by the master */
    uint64_t        wakeups;        /* idle workers woken by a notification */
    uint32_t        qseq;
    int             nqueues;
    double          qupdated;       /* rh_mono_now() of the last refresh; 0 = never */
    int64_t         depth_limit;    /* [metrics] depth_limit of that refresh: a depth of this many means "at least" */
    rh_metric_queue_t queues[RH_METRIC_QUEUES];
} rh_metrics_t;

/*
 * The table, in the master's shared memory; set by the master before it
 * forks (children inherit the pointer).  NULL elsewhere (rhinoctl, tests):
 * every function below is then a no-op.
 */
extern rh_metrics_t *rh_metrics;

/* The index of (queue, kind) in the key table, creating it; -1 = the overflow entry. */
int  rh_metrics_key(const char *queue, const char *kind);
void rh_metrics_add(int key, rh_counter_id_t what, uint64_t n);
void rh_metrics_observe(int slot, rh_hist_id_t which, double seconds);
/* Completed + retried + discarded over all keys (for STATUS lines: jobs/s). */
uint64_t rh_metrics_finished(void);

/* Parse "HOST:PORT" ([v6]:PORT, *:PORT, localhost:PORT); -1 with a reason in err. */
int  rh_metrics_parse_listen(const char *s, struct sockaddr_storage *sa, socklen_t *salen,
                             char *err, size_t errlen) __attribute__((warn_unused_result));

/* Extra gauges the master knows and the shared memory does not. */
typedef struct {
    int workers_configured;
    int workers_alive;
    int workers_ready;
    int reaper_up;
} rh_metrics_gauges_t;

/*
 * Render everything in the Prometheus text format 0.0.4 into a malloc'd
 * string (*len set); NULL when out of memory.
 */
char *rh_metrics_render(const rh_metrics_gauges_t *g, size_t *len);

#endif
