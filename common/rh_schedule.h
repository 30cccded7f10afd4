/* rh_schedule.h - periodic jobs: [schedule NAME] config sections, and firing the schedules that are due. */
#ifndef RH_SCHEDULE_H
#define RH_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "rh_cron.h"

struct rh_config;
struct _dictionary_;

/* Most missed fires that the 'all' policy enqueues after a downtime: the newest ones. */
#define RH_SCHEDULE_MAX_CATCHUP 1000

/*
 * A fire time the reaper sees at most this many seconds after it passed is
 * on time; one seen later was missed (rhino was down, or the reaper
 * stalled), as the README promises: "more than 60 s" late is dropped.  Only
 * the 'none' policy tells them apart.  The tick counts in whole seconds
 * (its now is floored, as in the "seen N s late" log line), so a fire seen
 * 60.5 s late counts as 60 and runs.
 */
#define RH_SCHEDULE_GRACE 60

typedef enum {
    RH_MISSED_LATEST = 0,       /* enqueue only the newest due fire time (the default) */
    RH_MISSED_ALL,              /* every due fire time, the newest RH_SCHEDULE_MAX_CATCHUP */
    RH_MISSED_NONE              /* only an on-time fire; missed ones are dropped */
} rh_missed_t;

/* One [schedule NAME] section of the config. */
typedef struct rh_schedule_def {
    char   *name;
    char   *cron;
    char   *kind;
    char   *payload;            /* JSON text, "{}" unless set */
    char   *queue;
    char   *missed;             /* latest, all, none */
    int     priority;
    int     max_attempts;
    double  timeout;            /* 0 = none */
} rh_schedule_def_t;

/* "latest", "all", "none" -> rh_missed_t; -1 if none of them. */
int rh_schedule_parse_missed(const char *s);

/*
 * Is sec ("schedule nightly") a schedule section?  Then parse it into
 * cfg->schedules and return 1, or -1 with err ("[schedule nightly] cron: ...").
 * 0 if it is not a schedule section.  Called by rh_config_load.
 */
int rh_schedule_config_section(struct _dictionary_ *d, const char *sec, struct rh_config *cfg,
                               char *err, size_t errlen);
void rh_schedule_defs_free(rh_schedule_def_t *defs, int n);

/* Is s one JSON value (RFC 8259), nothing else but blanks?  For the payload key. */
int rh_schedule_json_valid(const char *s);

/*
 * What one schedule does at time now, given that every fire time up to
 * fired_until has been dealt with: the due fire times are those in
 * (fired_until, now].  Pure; the reaper's firing and the tests share it.
 */
typedef struct {
    int64_t fired_until;        /* the new value: the newest due fire time, or the old one if none is due */
    int64_t next_fire;          /* the first fire time after max(now, fired_until) */
    int64_t first_due;          /* the oldest due fire time (0 if none is due) */
    int     capped;             /* 'all': more were due than RH_SCHEDULE_MAX_CATCHUP; the oldest were dropped */
    int     nfires;             /* fire times to enqueue, oldest first */
    int64_t fires[RH_SCHEDULE_MAX_CATCHUP];
} rh_schedule_plan_t;

int rh_schedule_plan(const rh_cron_t *c, rh_missed_t missed, int64_t fired_until, int64_t now,
                     rh_schedule_plan_t *plan) __attribute__((warn_unused_result));

/*
 * Upsert the config's schedules with rhino.schedule(..., source => 'config')
 * and warn about config schedules in the table that this config no longer
 * has.  Returns 0, or -1 if the connection failed (try again later); a
 * schedule the database refuses is logged and skipped.
 */
int rh_schedule_sync(PGconn *conn, const struct rh_config *cfg) __attribute__((warn_unused_result));

/*
 * Fire every schedule that is due at now (an ISO timestamp; NULL for the
 * database's now()): for each, one statement advances its fired_until by
 * compare-and-set and inserts the fire rows and their jobs, so each fire time
 * is enqueued exactly once whichever host gets there first.  Returns the
 * number of jobs enqueued, or -1 after a database error (logged).
 */
int rh_schedule_tick(PGconn *conn, const char *now) __attribute__((warn_unused_result));

/* Delete fire rows older than keep seconds (the newest of each schedule stays); rows deleted or -1. */
int rh_schedule_prune(PGconn *conn, double keep) __attribute__((warn_unused_result));

#endif
