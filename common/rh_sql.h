/* rh_sql.h - every SQL statement Rhino's processes send, by name. */
#ifndef RH_SQL_H
#define RH_SQL_H

/*
 * The schema version this build expects: the highest sql/NNN_*.sql, written
 * by sql/embed.sh into the generated migration table, so that adding a
 * migration file is the whole of a schema change.
 */
extern const int rh_schema_latest;
#define RH_SCHEMA_VERSION rh_schema_latest

typedef enum {
    /* worker */
    RH_STMT_CLAIM = 0,
    RH_STMT_FINALIZE,
    RH_STMT_FINALIZE_TX,
    RH_STMT_FINALIZE_DONE,
    RH_STMT_FINALIZE_DONE_KEEP,
    RH_STMT_JOB_STATES,
    RH_STMT_RELEASE,
    RH_STMT_RELEASE_MINE,
    RH_STMT_WORKER_REGISTER,
    RH_STMT_WORKER_END,
    RH_STMT_WORKER_ALIVE,
    /* master */
    RH_STMT_SCHEMA_VERSION,
    RH_STMT_NODE_REGISTER,
    /* reaper */
    RH_STMT_LEASES_RENEW,
    RH_STMT_CRASHED,
    RH_STMT_INTERRUPTED,
    RH_STMT_NODE_STOP,
    RH_STMT_WORKERS_RECONCILE,
    RH_STMT_RESCUE,
    RH_STMT_RESCUE_ORPHANS,
    RH_STMT_PLANS_GENERIC,
    RH_STMT_PLANS_CUSTOM,
    RH_STMT_PROMOTE,
    RH_STMT_PRUNE,
    RH_STMT_PRUNE_BATCHES,
    RH_STMT_PRUNE_ERRORS,
    RH_STMT_GC_NODES,
    RH_STMT_GC_WORKERS,
    RH_STMT_VACUUM_DUE,
    RH_STMT_VACUUM_HOT,
    RH_STMT_QUEUE_DEPTH,
    RH_STMT_NO_PARALLEL,
    RH_STMT_CANCEL_REQUESTS,
    /* master */
    RH_STMT_LISTEN,
    RH_STMT_NODE_IDLE,
    /* rhinoctl */
    RH_STMT_ENQUEUE,
    RH_STMT_STATS,
    RH_STMT_CTL_RUN_AT,
    RH_STMT_CTL_COPY,
    RH_STMT_CTL_COPY_MIN,
    RH_STMT_CTL_LIST,
    RH_STMT_CTL_SHOW,
    RH_STMT_CTL_REDRIVE,
    RH_STMT_CTL_KEY_HOLDER,
    RH_STMT_CTL_CANCEL,
    RH_STMT_CTL_PAUSE,
    RH_STMT_CTL_RESUME,
    RH_STMT_CTL_PURGE,
    RH_STMT_CTL_PURGE_BATCHES,
    RH_STMT_CTL_TOP_QUEUES,
    RH_STMT_CTL_TOP_NODES,
    /* periodic jobs (common/rh_schedule.c; rhinoctl schedule, schedules, unschedule) */
    RH_STMT_SCHEDULE_UPSERT,
    RH_STMT_SCHEDULE_ORPHANS,
    RH_STMT_SCHEDULES_DUE,
    RH_STMT_SCHEDULE_FIRE,
    RH_STMT_SCHEDULE_INVALID,
    RH_STMT_SCHEDULE_PRUNE,
    RH_STMT_CTL_SCHEDULES,
    RH_STMT_CTL_UNSCHEDULE,
    /* unique jobs, throttle windows, wake-ups (sql/003_unique.sql; reaper, rhinoctl enqueue) */
    RH_STMT_UNIQUE_PRUNE,
    RH_STMT_CTL_NOTIFY,
    RH_STMT_CTL_DURATION,
    /* queue limits and priority aging (sql/005_limits.sql; worker, reaper/rh_limits.c, rhinoctl queue) */
    RH_STMT_CLAIM_LIMITED,
    RH_STMT_LIMITS_FLAG,
    RH_STMT_AGE,
    RH_STMT_LIMITS_PRUNE,
    RH_STMT_CTL_QUEUE_SET,
    RH_STMT_CTL_QUEUES,
    RH_STMT__COUNT
} rh_stmt_id_t;

typedef struct {
    rh_stmt_id_t id;
    const char  *name;
    const char  *sql;
    int          nparams;
    /*
     * 1: the statement's shape admits one plan whatever the statistics say
     * (with sequential scans off), so a worker that prepares it may run its
     * generic plan: RH_STMT_PLANS_GENERIC.  0: plan it for the values at hand.
     */
    int          generic;
} rh_stmt_t;

const rh_stmt_t *rh_sql(rh_stmt_id_t id);

#endif
