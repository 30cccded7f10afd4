/* rh_cron.h - cron expressions: five fields or a macro, and their fire times in UTC. */
#ifndef RH_CRON_H
#define RH_CRON_H

#include <stddef.h>
#include <stdint.h>

/* Longest expression accepted (bytes); rhino.cron_check() says the same. */
#define RH_CRON_MAX_LEN 255

/*
 * A parsed expression: one bit per allowed value of each field.  Times are
 * whole seconds since 1970-01-01 UTC; there is no time zone (see README,
 * "Periodic jobs": schedules are in UTC).
 */
typedef struct {
    uint64_t minute;        /* bit m: minute m, 0..59 */
    uint32_t hour;          /* bit h: 0..23 */
    uint32_t dom;           /* bit d: day of month 1..31 */
    uint16_t month;         /* bit m: 1..12 */
    uint8_t  dow;           /* bit d: day of week 0..6, Sunday 0 (7 is folded into 0) */
    /*
     * Vixie cron's rule: when both day fields are restricted, a day matches
     * if EITHER matches ("0 0 1,15 * mon": the 1st, the 15th and every
     * Monday); when either begins with '*', both must match.  "Restricted"
     * means "does not begin with '*'", so "*\/2" counts as unrestricted, as
     * in Vixie cron and cronie.
     */
    uint8_t  dom_star;
    uint8_t  dow_star;
} rh_cron_t;

/*
 * Parse expr: "MIN HOUR DOM MON DOW" (each field '*', N, A-B, a comma list
 * of those, any with /STEP; month names jan..dec, day names sun..sat,
 * case-insensitive; day-of-week 0-7 with 0 and 7 Sunday) or a macro
 * (@hourly @daily @midnight @weekly @monthly @yearly @annually).  Returns 0,
 * or -1 with err = 'cron expression "EXPR": REASON', the reason naming the
 * field ('minute field "61": 61 is out of range 0-59').  rhino.cron_check()
 * in sql/004_cron.sql implements the same grammar with the same messages.
 */
int rh_cron_parse(const char *expr, rh_cron_t *c, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Does minute t (seconds are ignored) match? */
int rh_cron_matches(const rh_cron_t *c, int64_t t);

/*
 * The first fire time strictly after t, into *out.  -1 if there is none
 * within RH_CRON_HORIZON_YEARS (a parsed expression always has one; t out
 * of the years 1..9999 also gives -1).
 */
int rh_cron_next(const rh_cron_t *c, int64_t t, int64_t *out) __attribute__((warn_unused_result));

/* The last fire time at or before t, into *out; -1 if none within the horizon. */
int rh_cron_prev(const rh_cron_t *c, int64_t t, int64_t *out) __attribute__((warn_unused_result));

/* How far next/prev search: more than the longest gap any valid expression has. */
#define RH_CRON_HORIZON_YEARS 100

/* Calendar helpers (proleptic Gregorian, UTC), shared with the tests. */
int64_t rh_cron_days_from_civil(int64_t y, unsigned m, unsigned d);
void    rh_cron_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);
/* t as "2030-01-01T12:00:00Z" into buf (at least 21 bytes). */
void    rh_cron_format(int64_t t, char *buf, size_t len);

#endif
