/*
 * check_cron.c - the cron expression parser, fire-time arithmetic and the
 * missed-fire plan (common/rh_cron.c, common/rh_schedule.c), and the
 * [schedule NAME] config sections.  No database: tests/check_schedule.c
 * has the SQL side.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rh_config.h"
#include "rh_cron.h"
#include "rh_schedule.h"
#include "rh_testlib.h"
#include "cron_cases.h"

/* "2024-02-29T12:34" (minutes; UTC) as epoch seconds. */
static int64_t
T(const char *iso)
{
    int y, mo, d, h = 0, mi = 0;

    ck_assert_msg(sscanf(iso, "%d-%d-%dT%d:%d", &y, &mo, &d, &h, &mi) >= 3, "bad test time %s", iso);
    return rh_cron_days_from_civil(y, (unsigned) mo, (unsigned) d) * 86400 + h * 3600 + mi * 60;
}

static rh_cron_t
P(const char *expr)
{
    rh_cron_t c;
    char      err[512];

    ck_assert_msg(rh_cron_parse(expr, &c, err, sizeof(err)) == 0, "%s: %s", expr, err);
    return c;
}

static uint64_t
bits(const int *v, int n)
{
    uint64_t b = 0;

    for (int i = 0; i < n; i++)
        b |= 1ULL << v[i];
    return b;
}

#define BITS(...) bits((const int[]){ __VA_ARGS__ }, (int) (sizeof((const int[]){ __VA_ARGS__ }) / sizeof(int)))

/* ---- parsing ---------------------------------------------------------------- */

START_TEST(test_parse_fields)
{
    rh_cron_t c = P("*/15 0-6/2 1,15 jan-mar,Dec MON-fri");

    ck_assert_uint_eq(c.minute, BITS(0, 15, 30, 45));
    ck_assert_uint_eq(c.hour, BITS(0, 2, 4, 6));
    ck_assert_uint_eq(c.dom, BITS(1, 15));
    ck_assert_uint_eq(c.month, BITS(1, 2, 3, 12));
    ck_assert_uint_eq(c.dow, BITS(1, 2, 3, 4, 5));
    ck_assert(!c.dom_star && !c.dow_star);

    c = P("* * * * *");
    ck_assert_uint_eq(c.minute, (1ULL << 60) - 1);
    ck_assert_uint_eq(c.hour, (1u << 24) - 1);
    ck_assert_uint_eq(c.dom, ((1u << 31) - 1) << 1);
    ck_assert_uint_eq(c.month, ((1u << 12) - 1) << 1);
    ck_assert_uint_eq(c.dow, 0x7f);
    ck_assert(c.dom_star && c.dow_star);

    /* 7 is Sunday too; 5-7 wraps into 0 */
    ck_assert_uint_eq(P("0 0 * * 7").dow, BITS(0));
    ck_assert_uint_eq(P("0 0 * * 5-7").dow, BITS(0, 5, 6));
    ck_assert_uint_eq(P("0 0 * * sun,sat").dow, BITS(0, 6));
    /* N/STEP is N to the end of the field */
    ck_assert_uint_eq(P("5/20 * * * *").minute, BITS(5, 25, 45));
    ck_assert_uint_eq(P("0 0 */10 * *").dom, BITS(1, 11, 21, 31));
    ck_assert_uint_eq(P("0 0 * */4 *").month, BITS(1, 5, 9));
    /* a step larger than the range leaves its start */
    ck_assert_uint_eq(P("10-20/30 * * * *").minute, BITS(10));
    /* leading zeros, repeated values, blanks around and between fields */
    ck_assert_uint_eq(P(" \t007,7,07\t*  * *   *\n").minute, BITS(7));
    /* '*' with a step still counts as '*' for the day rule (Vixie) */
    c = P("0 0 */2 * 1");
    ck_assert(c.dom_star && !c.dow_star);
}
END_TEST

START_TEST(test_parse_macros)
{
    static const char *const pairs[][2] = {
        { "@yearly", "0 0 1 1 *" }, { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
        { "@weekly", "0 0 * * 0" }, { "@daily", "0 0 * * *" },     { "@midnight", "0 0 * * *" },
        { "@hourly", "0 * * * *" }, { " @DAILY ", "0 0 * * *" },
    };

    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        rh_cron_t a = P(pairs[i][0]), b = P(pairs[i][1]);

        ck_assert_msg(memcmp(&a, &b, sizeof(a)) == 0, "%s differs from %s", pairs[i][0], pairs[i][1]);
    }
}
END_TEST

START_TEST(test_parse_errors)
{
    for (size_t i = 0; i < sizeof(rt_cron_bad) / sizeof(rt_cron_bad[0]); i++) {
        rh_cron_t c;
        char      err[512] = "";

        ck_assert_msg(rh_cron_parse(rt_cron_bad[i][0], &c, err, sizeof(err)) == -1, "accepted \"%s\"",
                      rt_cron_bad[i][0]);
        ck_assert_msg(strcmp(err, rt_cron_bad[i][1]) == 0, "\"%s\":\n got  %s\n want %s", rt_cron_bad[i][0], err,
                      rt_cron_bad[i][1]);
    }
}
END_TEST

START_TEST(test_parse_limits)
{
    rh_cron_t c;
    char      err[512], expr[300];

    for (size_t i = 0; i < sizeof(rt_cron_good) / sizeof(rt_cron_good[0]); i++)
        P(rt_cron_good[i]);
    /* with a restricted day of week, the 30th of February is fine: Mondays in February exist */
    P("0 0 30 2 mon");
    /* February 29 exists (in leap years) */
    P("0 0 29 2 *");
    memset(expr, ' ', sizeof(expr));
    memcpy(expr, "* * * * *", 9);
    expr[256] = '\0';
    ck_assert_int_eq(rh_cron_parse(expr, &c, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "longer than 255 bytes") != NULL, "%s", err);
    expr[255] = '\0';
    P(expr);
    ck_assert_int_eq(rh_cron_parse(NULL, &c, err, sizeof(err)), -1);
    /* a tiny buffer is cut, not overrun */
    ck_assert_int_eq(rh_cron_parse("61 * * * *", &c, err, 8), -1);
    ck_assert_uint_eq(strlen(err), 7);
}
END_TEST

/* ---- fire times ---------------------------------------------------------------- */

/* cron, after, expected next (all UTC minutes) */
static const char *const next_cases[][3] = {
    { "* * * * *", "2024-01-01T00:00", "2024-01-01T00:01" },
    { "* * * * *", "2024-12-31T23:59", "2025-01-01T00:00" },
    { "0 0 1 1 *", "2023-12-31T23:59", "2024-01-01T00:00" },
    { "59 23 31 12 *", "2024-12-31T23:59", "2025-12-31T23:59" },
    /* month ends: the 31st skips short months */
    { "0 0 31 * *", "2024-01-31T00:00", "2024-03-31T00:00" },
    { "0 0 31 * *", "2024-04-01T00:00", "2024-05-31T00:00" },
    { "0 0 30 * *", "2024-01-30T00:00", "2024-03-30T00:00" },
    { "0 0 28-31 2 *", "2023-02-27T00:00", "2023-02-28T00:00" },
    { "0 0 28-31 2 *", "2023-02-28T00:00", "2024-02-28T00:00" },
    { "0 0 28-31 2 *", "2024-02-28T00:00", "2024-02-29T00:00" },
    /* February 29: leap years only; 2100 is not one */
    { "0 0 29 2 *", "2024-03-01T00:00", "2028-02-29T00:00" },
    { "0 0 29 2 *", "2096-03-01T00:00", "2104-02-29T00:00" },
    { "0 0 29 2 *", "2000-01-01T00:00", "2000-02-29T00:00" },
    /* the day of week alone (2024-01-01 was a Monday) */
    { "0 12 * * mon", "2024-01-01T12:00", "2024-01-08T12:00" },
    { "0 0 * * 0", "2024-01-01T00:00", "2024-01-07T00:00" },
    { "0 0 * * 7", "2024-01-01T00:00", "2024-01-07T00:00" },
    { "30 9 * * mon-fri", "2024-01-05T09:30", "2024-01-08T09:30" },
    /* both restricted: either matches (Vixie) -- Friday the 5th, Friday the 12th, Saturday the 13th */
    { "0 0 13 * fri", "2024-01-01T00:00", "2024-01-05T00:00" },
    { "0 0 13 * fri", "2024-01-05T00:00", "2024-01-12T00:00" },
    { "0 0 13 * fri", "2024-01-12T00:00", "2024-01-13T00:00" },
    /* a day of week beginning with '*': both must match -- the 13th that is a Sunday */
    { "0 0 13 * */7", "2024-01-01T00:00", "2024-10-13T00:00" },
    /* February 29 on a Sunday */
    { "0 0 29 2 */7", "2024-01-01T00:00", "2032-02-29T00:00" },
    /* seconds in "after" are dropped: the next minute */
    { "* * * * *", "2024-01-01T00:00", "2024-01-01T00:01" },
    { "*/15 * * * *", "2024-01-01T00:14", "2024-01-01T00:15" },
    { "*/15 * * * *", "2024-01-01T23:45", "2024-01-02T00:00" },
    { "0 */6 * * *", "2024-01-01T19:00", "2024-01-02T00:00" },
    { "@monthly", "2024-01-15T00:00", "2024-02-01T00:00" },
    { "@yearly", "2024-01-01T00:00", "2025-01-01T00:00" },
    { "@weekly", "2024-01-01T00:00", "2024-01-07T00:00" },
    /* before 1970 */
    { "0 0 1 1 *", "1969-06-01T00:00", "1970-01-01T00:00" },
    { "0 0 29 2 *", "1897-01-01T00:00", "1904-02-29T00:00" },
};

START_TEST(test_next)
{
    for (size_t i = 0; i < sizeof(next_cases) / sizeof(next_cases[0]); i++) {
        rh_cron_t c = P(next_cases[i][0]);
        int64_t   got, want = T(next_cases[i][2]);
        char      g[32], w[32];

        ck_assert_msg(rh_cron_next(&c, T(next_cases[i][1]), &got) == 0, "%s: no next", next_cases[i][0]);
        rh_cron_format(got, g, sizeof(g));
        rh_cron_format(want, w, sizeof(w));
        ck_assert_msg(got == want, "next \"%s\" after %s: got %s, want %s", next_cases[i][0], next_cases[i][1],
                      g, w);
        /* and back: the last fire time at or before the expected one is itself */
        ck_assert_int_eq(rh_cron_prev(&c, want, &got), 0);
        ck_assert_msg(got == want, "prev \"%s\" at %s", next_cases[i][0], w);
    }
    /* seconds: 00:00:30 -> 00:01 */
    {
        rh_cron_t c = P("* * * * *");
        int64_t   got;

        ck_assert_int_eq(rh_cron_next(&c, T("2024-01-01T00:00") + 30, &got), 0);
        ck_assert_int_eq(got, T("2024-01-01T00:01"));
        ck_assert_int_eq(rh_cron_prev(&c, T("2024-01-01T00:00") + 59, &got), 0);
        ck_assert_int_eq(got, T("2024-01-01T00:00"));
    }
}
END_TEST

/* cron, at, expected prev */
static const char *const prev_cases[][3] = {
    { "0 0 31 * *", "2024-03-30T23:59", "2024-01-31T00:00" },
    { "0 0 29 2 *", "2104-02-28T00:00", "2096-02-29T00:00" },
    { "0 9 * * mon-fri", "2024-01-08T08:59", "2024-01-05T09:00" },
    { "*/15 * * * *", "2024-01-01T00:14", "2024-01-01T00:00" },
    { "*/15 * * * *", "2024-01-01T00:00", "2024-01-01T00:00" },
    { "0 0 1 1 *", "2024-01-01T00:00", "2024-01-01T00:00" },
    { "0 0 1 1 *", "2023-12-31T23:59", "2023-01-01T00:00" },
    { "0 0 13 * fri", "2024-01-12T23:59", "2024-01-12T00:00" },
    { "0 0 13 * fri", "2024-01-11T23:59", "2024-01-05T00:00" },
    { "59 23 * * *", "2024-03-01T00:00", "2024-02-29T23:59" },
};

START_TEST(test_prev)
{
    for (size_t i = 0; i < sizeof(prev_cases) / sizeof(prev_cases[0]); i++) {
        rh_cron_t c = P(prev_cases[i][0]);
        int64_t   got, want = T(prev_cases[i][2]);
        char      g[32], w[32];

        ck_assert_msg(rh_cron_prev(&c, T(prev_cases[i][1]), &got) == 0, "%s: no prev", prev_cases[i][0]);
        rh_cron_format(got, g, sizeof(g));
        rh_cron_format(want, w, sizeof(w));
        ck_assert_msg(got == want, "prev \"%s\" at %s: got %s, want %s", prev_cases[i][0], prev_cases[i][1],
                      g, w);
    }
}
END_TEST

/*
 * rh_cron_matches against gmtime_r (the C library's calendar, not ours), and
 * next/prev against a minute-by-minute scan, over a few years of minutes
 * around month ends and a leap day.
 */
START_TEST(test_against_brute_force)
{
    static const char *const exprs[] = {
        "* * * * *", "*/7 * * * *", "0 */5 * * *", "0 0 31 * *", "0 0 29 2 *", "0 0 13 * fri",
        "0 0 13 * */7", "30 9 * * mon-fri", "0 0 1,15 * 1", "0 0 28-31 * *", "*/20 3-5 29,30 1-3 *",
        "@weekly", "0 12 */2 * *", "0 0 * feb sun",
    };
    static const char *const starts[] = { "2024-02-27T00:00", "2099-12-30T00:00", "1999-12-30T22:00" };

    for (size_t e = 0; e < sizeof(exprs) / sizeof(exprs[0]); e++) {
        rh_cron_t c = P(exprs[e]);

        for (size_t s = 0; s < sizeof(starts) / sizeof(starts[0]); s++) {
            int64_t t0 = T(starts[s]), prev_fire = INT64_MIN;

            /* 8 days minute by minute: matches, next and prev agree with the scan */
            for (int64_t t = t0; t < t0 + 8 * 86400; t += 60) {
                time_t    tt = (time_t) t;
                struct tm tm;
                int       dom_ok, dow_ok, day_ok, want, got;
                int64_t   n, p;

                gmtime_r(&tt, &tm);
                dom_ok = (c.dom >> tm.tm_mday) & 1;
                dow_ok = (c.dow >> tm.tm_wday) & 1;
                day_ok = (c.dom_star || c.dow_star) ? dom_ok && dow_ok : dom_ok || dow_ok;
                want = ((c.minute >> tm.tm_min) & 1) && ((c.hour >> tm.tm_hour) & 1) && day_ok &&
                       ((c.month >> (tm.tm_mon + 1)) & 1);
                got = rh_cron_matches(&c, t);
                ck_assert_msg(got == want, "\"%s\" at %lld: matches says %d", exprs[e], (long long) t, got);
                if (prev_fire != INT64_MIN) {
                    ck_assert_int_eq(rh_cron_next(&c, t - 60, &n), 0);
                    if (want)
                        ck_assert_msg(n == t, "\"%s\": next after %lld is %lld", exprs[e], (long long) (t - 60),
                                      (long long) n);
                    else
                        ck_assert(n > t);
                    ck_assert_int_eq(rh_cron_prev(&c, t, &p), 0);
                    ck_assert_msg(p == (want ? t : prev_fire), "\"%s\": prev at %lld is %lld, want %lld",
                                  exprs[e], (long long) t, (long long) p, (long long) (want ? t : prev_fire));
                }
                if (want)
                    prev_fire = t;
                else if (prev_fire == INT64_MIN && rh_cron_prev(&c, t, &p) == 0)
                    prev_fire = p;
            }
        }
    }
}
END_TEST

START_TEST(test_format_and_civil)
{
    char    buf[32];
    int64_t y;
    unsigned m, d;

    rh_cron_format(0, buf, sizeof(buf));
    ck_assert_str_eq(buf, "1970-01-01T00:00:00Z");
    rh_cron_format(T("2024-02-29T23:59") + 59, buf, sizeof(buf));
    ck_assert_str_eq(buf, "2024-02-29T23:59:59Z");
    rh_cron_format(-1, buf, sizeof(buf));
    ck_assert_str_eq(buf, "1969-12-31T23:59:59Z");
    for (int64_t day = -800000; day < 800000; day += 997) {
        rh_cron_civil_from_days(day, &y, &m, &d);
        ck_assert_int_eq(rh_cron_days_from_civil(y, m, d), day);
    }
}
END_TEST

/* ---- the missed-fire plan ------------------------------------------------------------ */

START_TEST(test_plan_on_time)
{
    rh_cron_t          c = P("* * * * *");
    rh_schedule_plan_t plan;
    int64_t            t0 = T("2024-01-01T10:00");

    /* nothing due in the same minute */
    ck_assert_int_eq(rh_schedule_plan(&c, RH_MISSED_LATEST, t0, t0 + 30, &plan), 0);
    ck_assert_int_eq(plan.nfires, 0);
    ck_assert_int_eq(plan.fired_until, t0);
    ck_assert_int_eq(plan.next_fire, t0 + 60);
    ck_assert_int_eq(plan.first_due, 0);
    /* the next minute came: one fire, on time, under every policy */
    for (int m = RH_MISSED_LATEST; m <= RH_MISSED_NONE; m++) {
        ck_assert_int_eq(rh_schedule_plan(&c, (rh_missed_t) m, t0, t0 + 60, &plan), 0);
        ck_assert_int_eq(plan.nfires, 1);
        ck_assert_int_eq(plan.fires[0], t0 + 60);
        ck_assert_int_eq(plan.fired_until, t0 + 60);
        ck_assert_int_eq(plan.next_fire, t0 + 120);
    }
    /* fired_until ahead of now (a clock step back): nothing, and the next fire is after fired_until */
    ck_assert_int_eq(rh_schedule_plan(&c, RH_MISSED_ALL, t0 + 600, t0, &plan), 0);
    ck_assert_int_eq(plan.nfires, 0);
    ck_assert_int_eq(plan.fired_until, t0 + 600);
    ck_assert_int_eq(plan.next_fire, t0 + 660);
}
END_TEST

START_TEST(test_plan_missed)
{
    rh_cron_t          hourly = P("0 * * * *");
    rh_schedule_plan_t plan;
    int64_t            t0 = T("2024-01-01T10:00"), now = T("2024-01-01T13:30");

    /* down from 10:00 to 13:30: 11:00, 12:00, 13:00 were missed */
    ck_assert_int_eq(rh_schedule_plan(&hourly, RH_MISSED_LATEST, t0, now, &plan), 0);
    ck_assert_int_eq(plan.nfires, 1);
    ck_assert_int_eq(plan.fires[0], T("2024-01-01T13:00"));
    ck_assert_int_eq(plan.first_due, T("2024-01-01T11:00"));
    ck_assert_int_eq(plan.fired_until, T("2024-01-01T13:00"));
    ck_assert_int_eq(plan.next_fire, T("2024-01-01T14:00"));

    ck_assert_int_eq(rh_schedule_plan(&hourly, RH_MISSED_ALL, t0, now, &plan), 0);
    ck_assert_int_eq(plan.nfires, 3);
    ck_assert_int_eq(plan.fires[0], T("2024-01-01T11:00"));
    ck_assert_int_eq(plan.fires[1], T("2024-01-01T12:00"));
    ck_assert_int_eq(plan.fires[2], T("2024-01-01T13:00"));
    ck_assert(!plan.capped);
    ck_assert_int_eq(plan.fired_until, T("2024-01-01T13:00"));

    /* none: 13:00 is 30 minutes late, so nothing; but the missed times are dealt with */
    ck_assert_int_eq(rh_schedule_plan(&hourly, RH_MISSED_NONE, t0, now, &plan), 0);
    ck_assert_int_eq(plan.nfires, 0);
    ck_assert_int_eq(plan.fired_until, T("2024-01-01T13:00"));
    ck_assert_int_eq(plan.next_fire, T("2024-01-01T14:00"));
    /*
     * none, within the grace, up to and including its last second (the
     * README: "more than 60 s" late is dropped): the newest fire is on time
     * and runs, the older missed ones do not
     */
    ck_assert_int_eq(rh_schedule_plan(&hourly, RH_MISSED_NONE, t0, T("2024-01-01T13:00") + RH_SCHEDULE_GRACE - 1,
                                      &plan), 0);
    ck_assert_int_eq(plan.nfires, 1);
    ck_assert_int_eq(plan.fires[0], T("2024-01-01T13:00"));
    ck_assert_int_eq(rh_schedule_plan(&hourly, RH_MISSED_NONE, t0, T("2024-01-01T13:00") + RH_SCHEDULE_GRACE,
                                      &plan), 0);
    ck_assert_int_eq(plan.nfires, 1);
    ck_assert_int_eq(plan.fires[0], T("2024-01-01T13:00"));
    ck_assert_int_eq(rh_schedule_plan(&hourly, RH_MISSED_NONE, t0, T("2024-01-01T13:00") + RH_SCHEDULE_GRACE + 1,
                                      &plan), 0);
    ck_assert_int_eq(plan.nfires, 0);
    ck_assert_int_eq(plan.fired_until, T("2024-01-01T13:00"));
}
END_TEST

START_TEST(test_plan_all_is_capped)
{
    rh_cron_t           c = P("* * * * *");
    rh_schedule_plan_t *plan = malloc(sizeof(*plan));
    int64_t             now = T("2024-01-02T00:00") + 10;
    int64_t             t0 = now - 10 - 3000 * 60;     /* 3000 minutes down */

    ck_assert_ptr_nonnull(plan);
    ck_assert_int_eq(rh_schedule_plan(&c, RH_MISSED_ALL, t0, now, plan), 0);
    ck_assert_int_eq(plan->nfires, RH_SCHEDULE_MAX_CATCHUP);
    ck_assert(plan->capped);
    /* the newest 1000, oldest first, one minute apart */
    ck_assert_int_eq(plan->fires[RH_SCHEDULE_MAX_CATCHUP - 1], now - 10);
    ck_assert_int_eq(plan->fires[0], now - 10 - (RH_SCHEDULE_MAX_CATCHUP - 1) * 60);
    for (int i = 1; i < plan->nfires; i++)
        ck_assert_int_eq(plan->fires[i] - plan->fires[i - 1], 60);
    ck_assert_int_eq(plan->first_due, t0 + 60);
    ck_assert_int_eq(plan->fired_until, now - 10);

    /* exactly 1000 due: all of them, not capped */
    ck_assert_int_eq(rh_schedule_plan(&c, RH_MISSED_ALL, now - 10 - 1000 * 60, now, plan), 0);
    ck_assert_int_eq(plan->nfires, 1000);
    ck_assert(!plan->capped);
    free(plan);
}
END_TEST

/* ---- config ------------------------------------------------------------------------ */

static int
load(const char *body, rh_config_t *cfg, char *err, size_t errlen)
{
    char  ini[4096];
    char *path;
    int   rc;

    snprintf(ini, sizeof(ini), "[handlers]\npath = /nonexistent.so\n%s", body);
    path = rt_write_file("rhino.ini", ini);
    rc = rh_config_load(path, cfg, err, errlen);
    free(path);
    return rc;
}

START_TEST(test_config_sections)
{
    rh_config_t cfg;
    char        err[1024] = "";

    ck_assert_msg(load("[schedule Nightly-Report]\ncron = 0 3 * * *\nkind = report\n"
                       "payload = '{\"to\": \"ops#1; x\"}'\nqueue = slow\npriority = -5\nmax_attempts = 3\n"
                       "timeout = 30\nmissed = all\n"
                       "[schedule tick]\ncron = @hourly\nkind = tick\n", &cfg, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(cfg.nschedules, 2);
    ck_assert_str_eq(cfg.schedules[0].name, "nightly-report");       /* iniparser lowercases sections */
    ck_assert_str_eq(cfg.schedules[0].cron, "0 3 * * *");
    ck_assert_str_eq(cfg.schedules[0].kind, "report");
    ck_assert_str_eq(cfg.schedules[0].payload, "{\"to\": \"ops#1; x\"}");
    ck_assert_str_eq(cfg.schedules[0].queue, "slow");
    ck_assert_int_eq(cfg.schedules[0].priority, -5);
    ck_assert_int_eq(cfg.schedules[0].max_attempts, 3);
    ck_assert(cfg.schedules[0].timeout == 30);
    ck_assert_str_eq(cfg.schedules[0].missed, "all");
    /* defaults */
    ck_assert_str_eq(cfg.schedules[1].name, "tick");
    ck_assert_str_eq(cfg.schedules[1].payload, "{}");
    ck_assert_str_eq(cfg.schedules[1].queue, "default");
    ck_assert_str_eq(cfg.schedules[1].missed, "latest");
    ck_assert_int_eq(cfg.schedules[1].max_attempts, 25);
    ck_assert(cfg.schedules[1].timeout == 0);
    rh_config_free(&cfg);

    /* no schedules at all */
    ck_assert_int_eq(load("", &cfg, err, sizeof(err)), 0);
    ck_assert_int_eq(cfg.nschedules, 0);
    ck_assert_ptr_null(cfg.schedules);
    rh_config_free(&cfg);
}
END_TEST

START_TEST(test_config_errors)
{
    static const char *const cases[][2] = {
        { "[schedule x]\ncron = 61 * * * *\nkind = k\n",
          "[schedule x] cron: cron expression \"61 * * * *\": minute field \"61\": 61 is out of range 0-59" },
        { "[schedule x]\nkind = k\n", "[schedule x]: cron is missing; a schedule needs at least cron and kind" },
        { "[schedule x]\ncron = @daily\n", "[schedule x]: kind is missing; a schedule needs at least cron and kind" },
        { "[schedule x]\ncron = @daily\nkind = k\ncolour = red\n", "[schedule x] colour: unknown key" },
        { "[schedule x]\ncron = @daily\nkind = k\nmissed = some\n",
          "[schedule x] missed: \"some\" is not one of latest, all, none" },
        { "[schedule x]\ncron = @daily\nkind = k\npayload = {\"a\": }\n",
          "[schedule x] payload: \"{\"a\": }\" is not valid JSON" },
        { "[schedule x]\ncron = @daily\nkind = k\npriority = 40000\n",
          "[schedule x] priority: \"40000\" is not a whole number from -32768 to 32767" },
        { "[schedule x]\ncron = @daily\nkind = k\nmax_attempts = 0\n",
          "[schedule x] max_attempts: \"0\" is not a whole number" },
        { "[schedule x]\ncron = @daily\nkind = k\ntimeout = -1\n", "[schedule x] timeout: \"-1\" is not a duration from 1ms to 7d" },
        { "[schedule]\ncron = @daily\nkind = k\n", "[schedule]: a schedule section needs a name" },
        { "[schedule a/b]\ncron = @daily\nkind = k\n", "[schedule a/b]: a schedule name may only have letters" },
        { "[schedules]\ncron = @daily\n", "unknown section [schedules]" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rh_config_t cfg;
        char        err[1024] = "";

        ck_assert_msg(load(cases[i][0], &cfg, err, sizeof(err)) == -1, "accepted:\n%s", cases[i][0]);
        ck_assert_msg(strstr(err, cases[i][1]) != NULL, "config:\n%s\n got  %s\n want %s", cases[i][0], err,
                      cases[i][1]);
        rh_config_free(&cfg);
    }
}
END_TEST

START_TEST(test_json_check)
{
    static const char *const good[] = {
        "{}", "[]", " {\"a\": [1, -2.5e+3, true, false, null, \"x\\u00e9\\n\"]} ", "0", "\"s\"", "{\"a\":{\"b\":{}}}",
    };
    static const char *const bad[] = {
        "", "{", "{\"a\"}", "{\"a\": 1,}", "[1 2]", "01", "1.", "tru", "{'a': 1}", "\"\\x\"", "\"a\nb\"", "{} {}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
        "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        ck_assert_msg(rh_schedule_json_valid(good[i]), "rejected %s", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!rh_schedule_json_valid(bad[i]), "accepted %s", bad[i]);
}
END_TEST

static Suite *
cron_suite(void)
{
    Suite *s = suite_create("cron");
    TCase *tc;

    tc = tcase_create("parse");
    tcase_add_test(tc, test_parse_fields);
    tcase_add_test(tc, test_parse_macros);
    tcase_add_test(tc, test_parse_errors);
    tcase_add_test(tc, test_parse_limits);
    suite_add_tcase(s, tc);

    tc = tcase_create("fire_times");
    tcase_add_test(tc, test_next);
    tcase_add_test(tc, test_prev);
    tcase_add_test(tc, test_against_brute_force);
    tcase_add_test(tc, test_format_and_civil);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("plan");
    tcase_add_test(tc, test_plan_on_time);
    tcase_add_test(tc, test_plan_missed);
    tcase_add_test(tc, test_plan_all_is_capped);
    suite_add_tcase(s, tc);

    tc = tcase_create("config");
    tcase_add_test(tc, test_config_sections);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_json_check);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(cron_suite());
    int      failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
