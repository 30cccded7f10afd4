/*
 * rh_cron.c - cron expressions: parsing, and the next and previous fire
 * times in UTC.
 *
 * Debian packages no C library for cron expressions (only Go, Perl and Ruby
 * ones), so this is our own.  The grammar is Vixie cron's five fields plus
 * the common "N/STEP" (N to the field's maximum) shorthand; the day rule is
 * Vixie's (see rh_cron.h).  The same grammar, with the same error messages,
 * is implemented in SQL as rhino.cron_check() (sql/004_cron.sql), so that
 * rhino.schedule() refuses a bad expression in the caller's transaction;
 * tests/check_schedule.c checks that both agree.
 *
 * There are no time zones: a named zone would need the process-wide TZ
 * variable and its daylight-saving gaps and repeats, and a schedule's fire
 * times must be the same on every host.  UTC has neither problem.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "rh_cron.h"

#define DAY   86400
#define HOUR  3600
#define MIN   60

/* 0001-01-01 and 9999-12-31T23:59:59, in seconds since the epoch */
#define T_MIN (-62135596800LL)
#define T_MAX 253402300799LL

static const char *const field_name[5] = { "minute", "hour", "day-of-month", "month", "day-of-week" };
static const int         field_lo[5] = { 0, 0, 1, 1, 0 };
static const int         field_hi[5] = { 59, 23, 31, 12, 7 };
static const char *const month_names[12] = {
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"
};
static const char *const day_names[7] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };
/* the most days each month can have: February 29 exists, in leap years */
static const int month_max_days[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

static const struct {
    const char *name;
    const char *fields;
} macros[] = {
    { "@yearly",   "0 0 1 1 *" },
    { "@annually", "0 0 1 1 *" },
    { "@monthly",  "0 0 1 * *" },
    { "@weekly",   "0 0 * * 0" },
    { "@daily",    "0 0 * * *" },
    { "@midnight", "0 0 * * *" },
    { "@hourly",   "0 * * * *" },
};

/* ---- calendar (Howard Hinnant's algorithms; exact for any year) --------- */

static int64_t
floor_div(int64_t a, int64_t b)
{
    return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

int64_t
rh_cron_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t  era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = floor_div(y, 400);
    yoe = (unsigned) (y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t) doe - 719468;
}

void
rh_cron_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t  era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = floor_div(z, 146097);
    doe = (unsigned) (z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t) yoe + era * 400 + (*m <= 2);
}

void
rh_cron_format(int64_t t, char *buf, size_t len)
{
    int64_t  days = floor_div(t, DAY), secs = t - days * DAY, y;
    unsigned m, d;

    rh_cron_civil_from_days(days, &y, &m, &d);
    snprintf(buf, len, "%04lld-%02u-%02uT%02d:%02d:%02dZ", (long long) y, m, d,
             (int) (secs / HOUR), (int) (secs / MIN % 60), (int) (secs % 60));
}

/* ---- parsing ------------------------------------------------------------ */

typedef struct {
    const char *expr;
    char       *err;
    size_t      errlen;
} parse_ctx_t;

static int
fail(parse_ctx_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
fail(parse_ctx_t *p, const char *fmt, ...)
{
    va_list ap;
    size_t  n;

    if (p->errlen == 0)
        return -1;
    snprintf(p->err, p->errlen, "cron expression \"%s\": ", p->expr);
    n = strlen(p->err);
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - n, fmt, ap);
    va_end(ap);
    return -1;
}

/*
 * One value of field f, the token [s, s+n): digits, or in the month and
 * day-of-week fields a three-letter name.
 */
static int
parse_value(parse_ctx_t *p, int f, const char *ftext, int flen, const char *s, int n, int *out)
{
    int digits = 1;

    for (int i = 0; i < n; i++)
        digits &= isdigit((unsigned char) s[i]) != 0;
    if (digits) {
        long v = 0;

        for (int i = 0; i < n && v <= 1000; i++)
            v = v * 10 + (s[i] - '0');
        if (v < field_lo[f] || v > field_hi[f])
            return fail(p, "%s field \"%.*s\": %.*s is out of range %d-%d", field_name[f], flen, ftext, n, s,
                        field_lo[f], field_hi[f]);
        *out = (int) v;
        return 0;
    }
    if (f == 3 || f == 4) {
        const char *const *names = f == 3 ? month_names : day_names;
        int                count = f == 3 ? 12 : 7;

        for (int i = 0; i < count && n == 3; i++)
            if (strncasecmp(s, names[i], 3) == 0) {
                *out = f == 3 ? i + 1 : i;
                return 0;
            }
        return fail(p, "%s field \"%.*s\": \"%.*s\" is not a %s", field_name[f], flen, ftext, n, s,
                    f == 3 ? "month name (jan..dec)" : "day name (sun..sat)");
    }
    return fail(p, "%s field \"%.*s\": \"%.*s\" is not a number", field_name[f], flen, ftext, n, s);
}

static int
alnum_run(const char *s, int n, int i)
{
    int j = i;

    while (j < n && isalnum((unsigned char) s[j]))
        j++;
    return j;
}

/*
 * One item of a field's comma list, [s, s+n): ( '*' | V [ '-' V ] ) [ '/' STEP ].
 * Sets its values in *bits.
 */
static int
parse_item(parse_ctx_t *p, int f, const char *ftext, int flen, const char *s, int n, uint64_t *bits)
{
    int a, b, step = 1, i = 0, j;

    if (n == 0)
        return fail(p, "%s field \"%.*s\": empty item in the list", field_name[f], flen, ftext);
    if (s[0] == '*') {
        a = field_lo[f];
        b = field_hi[f];
        i = 1;
    } else {
        int a_end, b_start = -1, b_end = -1;

        j = alnum_run(s, n, 0);
        if (j == 0)
            goto syntax;
        a_end = j;
        if (j < n && s[j] == '-') {
            b_start = j + 1;
            b_end = alnum_run(s, n, b_start);
            if (b_end == b_start)
                goto syntax;
            j = b_end;
        }
        i = j;
        /* the whole item's syntax first, so that "61!" is a syntax error, not a bad value */
        if (i < n && s[i] != '/')
            goto syntax;
        if (parse_value(p, f, ftext, flen, s, a_end, &a) < 0)
            return -1;
        if (b_start >= 0) {
            if (parse_value(p, f, ftext, flen, s + b_start, b_end - b_start, &b) < 0)
                return -1;
            if (b < a)
                return fail(p, "%s field \"%.*s\": range \"%.*s\" goes backwards (wrap-around ranges are "
                            "not supported)", field_name[f], flen, ftext, b_end, s);
        } else {
            /* "N/STEP" means N to the end of the field; a bare N is just N */
            b = i < n ? field_hi[f] : a;
        }
    }
    if (i < n) {
        long v = 0;

        if (s[i] != '/' || i + 1 == n)
            goto syntax;
        for (j = i + 1; j < n; j++) {
            if (!isdigit((unsigned char) s[j]))
                goto syntax;
            if (v <= 1000)
                v = v * 10 + (s[j] - '0');
        }
        if (v < 1 || v > field_hi[f])
            return fail(p, "%s field \"%.*s\": step %.*s is out of range 1-%d", field_name[f], flen, ftext,
                        n - i - 1, s + i + 1, field_hi[f]);
        step = (int) v;
    }
    for (int v = a; v <= b; v += step)
        *bits |= 1ULL << (f == 4 && v == 7 ? 0 : v);
    return 0;

syntax:
    return fail(p, "%s field \"%.*s\": \"%.*s\" is not *, a value, a range A-B, or one of them with /STEP",
                field_name[f], flen, ftext, n, s);
}

static int
parse_fields(parse_ctx_t *p, const char *text, rh_cron_t *c)
{
    const char *fs[5];
    int         fl[5], nf = 0;
    const char *s = text;
    uint64_t    bits[5] = { 0 };

    while (*s) {
        while (isspace((unsigned char) *s))
            s++;
        if (*s == '\0')
            break;
        if (nf < 5) {
            fs[nf] = s;
        }
        while (*s && !isspace((unsigned char) *s))
            s++;
        if (nf < 5)
            fl[nf] = (int) (s - fs[nf]);
        nf++;
    }
    if (nf != 5)
        return fail(p, "%d field%s; expected 5: minute hour day-of-month month day-of-week", nf,
                    nf == 1 ? "" : "s");
    for (int f = 0; f < 5; f++) {
        const char *item = fs[f], *end = fs[f] + fl[f];

        for (;;) {
            const char *comma = memchr(item, ',', (size_t) (end - item));
            const char *ie = comma ? comma : end;

            if (parse_item(p, f, fs[f], fl[f], item, (int) (ie - item), &bits[f]) < 0)
                return -1;
            if (comma == NULL)
                break;
            item = comma + 1;
        }
    }
    c->minute = bits[0];
    c->hour = (uint32_t) bits[1];
    c->dom = (uint32_t) bits[2];
    c->month = (uint16_t) bits[3];
    c->dow = (uint8_t) bits[4];
    c->dom_star = fs[2][0] == '*';
    c->dow_star = fs[4][0] == '*';

    /*
     * When only the day of month decides (day-of-week begins with '*'), it
     * must name a day that exists in one of the months: "0 0 30 2 *" would
     * never fire.  With a restricted day of week there is always some day.
     */
    if (!c->dom_star && c->dow_star) {
        int ok = 0;

        for (int m = 1; m <= 12 && !ok; m++)
            if (c->month & (1u << m))
                for (int d = 1; d <= month_max_days[m - 1] && !ok; d++)
                    ok = (c->dom >> d) & 1;
        if (!ok)
            return fail(p, "day-of-month field \"%.*s\" names no day that month field \"%.*s\" has",
                        fl[2], fs[2], fl[3], fs[3]);
    }
    return 0;
}

int
rh_cron_parse(const char *expr, rh_cron_t *c, char *err, size_t errlen)
{
    parse_ctx_t p = { expr ? expr : "", err, errlen };
    char        buf[RH_CRON_MAX_LEN + 1];
    const char *s;
    size_t      len;

    memset(c, 0, sizeof(*c));
    if (expr == NULL)
        return fail(&p, "empty; write five fields (minute hour day-of-month month day-of-week) or a macro "
                    "such as @daily");
    if (strlen(expr) > RH_CRON_MAX_LEN)
        return fail(&p, "longer than %d bytes", RH_CRON_MAX_LEN);
    s = expr;
    while (isspace((unsigned char) *s))
        s++;
    len = strlen(s);
    while (len > 0 && isspace((unsigned char) s[len - 1]))
        len--;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (len == 0)
        return fail(&p, "empty; write five fields (minute hour day-of-month month day-of-week) or a macro "
                    "such as @daily");
    if (buf[0] == '@') {
        for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++)
            if (strcasecmp(buf, macros[i].name) == 0)
                return parse_fields(&p, macros[i].fields, c);
        return fail(&p, "unknown macro \"%s\"; use @hourly, @daily, @weekly, @monthly or @yearly", buf);
    }
    return parse_fields(&p, buf, c);
}

/* ---- fire times ----------------------------------------------------------- */

static int
day_matches(const rh_cron_t *c, int64_t days, unsigned d)
{
    int dow = (int) ((days % 7 + 11) % 7);     /* 1970-01-01 (day 0) was a Thursday (4) */
    int dom_ok = (c->dom >> d) & 1, dow_ok = (c->dow >> dow) & 1;

    if (c->dom_star || c->dow_star)
        return dom_ok && dow_ok;
    return dom_ok || dow_ok;
}

int
rh_cron_matches(const rh_cron_t *c, int64_t t)
{
    int64_t  days = floor_div(t, DAY), secs = t - days * DAY, y;
    unsigned m, d;

    rh_cron_civil_from_days(days, &y, &m, &d);
    return ((c->month >> m) & 1) && day_matches(c, days, d) && ((c->hour >> (secs / HOUR)) & 1) &&
           ((c->minute >> (secs / MIN % 60)) & 1);
}

/*
 * Walk forward from the minute t, skipping a whole month, day or hour as
 * soon as it cannot match; the minute is found with one bit scan.
 */
int
rh_cron_next(const rh_cron_t *c, int64_t t, int64_t *out)
{
    int64_t limit;

    if (t < T_MIN || t > T_MAX)
        return -1;
    t = floor_div(t, MIN) * MIN + MIN;
    limit = t + (int64_t) RH_CRON_HORIZON_YEARS * 366 * DAY;
    while (t <= limit && t <= T_MAX) {
        int64_t  days = floor_div(t, DAY), secs = t - days * DAY, y;
        unsigned m, d;
        int      h = (int) (secs / HOUR), mi = (int) (secs / MIN % 60);
        uint64_t later;

        rh_cron_civil_from_days(days, &y, &m, &d);
        if (!((c->month >> m) & 1)) {
            t = rh_cron_days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) * DAY;
            continue;
        }
        if (!day_matches(c, days, d)) {
            t = (days + 1) * DAY;
            continue;
        }
        if (!((c->hour >> h) & 1)) {
            t = days * DAY + (int64_t) (h + 1) * HOUR;
            continue;
        }
        later = c->minute >> mi;
        if (later == 0) {
            t = days * DAY + (int64_t) (h + 1) * HOUR;
            continue;
        }
        *out = t + (int64_t) __builtin_ctzll(later) * MIN;
        return 0;
    }
    return -1;
}

/* The mirror image of rh_cron_next: walk backward, to the last minute of the unit before. */
int
rh_cron_prev(const rh_cron_t *c, int64_t t, int64_t *out)
{
    int64_t limit;

    if (t < T_MIN || t > T_MAX)
        return -1;
    t = floor_div(t, MIN) * MIN;
    limit = t - (int64_t) RH_CRON_HORIZON_YEARS * 366 * DAY;
    while (t >= limit && t >= T_MIN) {
        int64_t  days = floor_div(t, DAY), secs = t - days * DAY, y;
        unsigned m, d;
        int      h = (int) (secs / HOUR), mi = (int) (secs / MIN % 60);
        uint64_t earlier;

        rh_cron_civil_from_days(days, &y, &m, &d);
        if (!((c->month >> m) & 1)) {
            t = rh_cron_days_from_civil(y, m, 1) * DAY - MIN;
            continue;
        }
        if (!day_matches(c, days, d)) {
            t = days * DAY - MIN;
            continue;
        }
        if (!((c->hour >> h) & 1)) {
            t = days * DAY + (int64_t) h * HOUR - MIN;
            continue;
        }
        earlier = c->minute & ((2ULL << mi) - 1);
        if (earlier == 0) {
            t = days * DAY + (int64_t) h * HOUR - MIN;
            continue;
        }
        *out = days * DAY + (int64_t) h * HOUR + (int64_t) (63 - __builtin_clzll(earlier)) * MIN;
        return 0;
    }
    return -1;
}
