/* rb_util.c - errors, clocks, growing strings, JSON text and percentiles for rhino-bench. */
#include "config.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rh_log.h"
#include "rb_util.h"

volatile sig_atomic_t rb_interrupted;
void (*rb_before_message)(void);

void
rb_die(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    if (rb_before_message != NULL)
        rb_before_message();
    fputs("rhino-bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(rb_interrupted ? 130 : 1);
}

void
rb_die_usage(const char *fmt, ...)
{
    va_list ap;

    fputs("rhino-bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(rhino-bench --help lists the modes and options)\n", stderr);
    exit(2);
}

void
rb_warn(const char *fmt, ...)
{
    va_list ap;

    if (rb_before_message != NULL)
        rb_before_message();
    fputs("rhino-bench: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void
rb_check_interrupt(void)
{
    if (rb_interrupted)
        rb_die("interrupted; stopping");
}

double
rb_mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

int64_t
rb_realtime_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
rb_sleep(double seconds)
{
    struct timespec ts;

    if (seconds <= 0)
        return;
    ts.tv_sec = (time_t) seconds;
    ts.tv_nsec = (long) ((seconds - (double) ts.tv_sec) * 1e9);
    /* a signal cuts the sleep short; the caller's loop looks at rb_interrupted */
    nanosleep(&ts, NULL);
}

void *
rb_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL)
        rb_die("out of memory (%zu bytes)", n);
    return p;
}

char *
rb_xstrdup(const char *s)
{
    char *p = strdup(s);

    if (p == NULL)
        rb_die("out of memory");
    return p;
}

/* ---- growing strings ---------------------------------------------------- */

void
rb_buf_add(rb_buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char  *p;

        while (b->len + n + 1 > cap)
            cap *= 2;
        if ((p = realloc(b->data, cap)) == NULL)
            rb_die("out of memory");
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void
rb_buf_puts(rb_buf_t *b, const char *s)
{
    rb_buf_add(b, s, strlen(s));
}

void
rb_buf_printf(rb_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    char    small[256];
    int     n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        rb_die("cannot format a string");
    if ((size_t) n < sizeof(small)) {
        rb_buf_add(b, small, (size_t) n);
        return;
    }
    {
        char *big = rb_xmalloc((size_t) n + 1);

        va_start(ap, fmt);
        vsnprintf(big, (size_t) n + 1, fmt, ap);
        va_end(ap);
        rb_buf_add(b, big, (size_t) n);
        free(big);
    }
}

void
rb_buf_free(rb_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- JSON text ----------------------------------------------------------- */

/* The escaped form of s, with quotes, appended (rh_log's escaper: control bytes and bad UTF-8 handled). */
static void
json_string(rb_buf_t *b, const char *s)
{
    size_t n = strlen(s), size = 6 * n + 3;
    char  *tmp = rb_xmalloc(size);
    size_t len;

    tmp[0] = '"';
    len = rh_log_json_escape(tmp, size - 1, 1, s);
    tmp[len++] = '"';
    rb_buf_add(b, tmp, len);
    free(tmp);
}

/* The comma and the key that go before a member. */
static void
json_member(rb_json_t *j, const char *key)
{
    if (j->depth > 0 && j->count[j->depth - 1]++ > 0)
        rb_buf_add(&j->b, ",", 1);
    if (key != NULL) {
        json_string(&j->b, key);
        rb_buf_add(&j->b, ":", 1);
    }
}

static void
json_push(rb_json_t *j, const char *key, const char *open)
{
    json_member(j, key);
    if (j->depth >= RB_JSON_DEPTH)
        rb_die("internal error: JSON nested too deep");
    j->count[j->depth++] = 0;
    rb_buf_puts(&j->b, open);
}

void rb_json_begin(rb_json_t *j, const char *key)       { json_push(j, key, "{"); }
void rb_json_begin_array(rb_json_t *j, const char *key) { json_push(j, key, "["); }

void
rb_json_end(rb_json_t *j)
{
    j->depth--;
    rb_buf_add(&j->b, "}", 1);
}

void
rb_json_end_array(rb_json_t *j)
{
    j->depth--;
    rb_buf_add(&j->b, "]", 1);
}

void
rb_json_str(rb_json_t *j, const char *key, const char *val)
{
    json_member(j, key);
    if (val == NULL)
        rb_buf_puts(&j->b, "null");
    else
        json_string(&j->b, val);
}

void
rb_json_int(rb_json_t *j, const char *key, long long val)
{
    json_member(j, key);
    rb_buf_printf(&j->b, "%lld", val);
}

void
rb_json_num(rb_json_t *j, const char *key, double val, int decimals)
{
    json_member(j, key);
    if (!isfinite(val))
        rb_buf_puts(&j->b, "null");
    else
        rb_buf_printf(&j->b, "%.*f", decimals, val);
}

void
rb_json_bool(rb_json_t *j, const char *key, int val)
{
    json_member(j, key);
    rb_buf_puts(&j->b, val ? "true" : "false");
}

void
rb_json_null(rb_json_t *j, const char *key)
{
    json_member(j, key);
    rb_buf_puts(&j->b, "null");
}

void
rb_json_raw(rb_json_t *j, const char *key, const char *json)
{
    json_member(j, key);
    rb_buf_puts(&j->b, json);
}

/* ---- numbers ------------------------------------------------------------- */

const char *
rb_fmt_int(char *buf, size_t size, long long v)
{
    char   digits[32];
    int    n = snprintf(digits, sizeof(digits), "%lld", v < 0 ? -v : v);
    size_t o = 0;

    if (v < 0 && o + 1 < size)
        buf[o++] = '-';
    for (int i = 0; i < n && o + 2 < size; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

int64_t
rb_percentile(const int64_t *sorted, size_t n, double p)
{
    double rank = ceil(p / 100.0 * (double) n);
    size_t i = rank < 1 ? 0 : (size_t) rank - 1;

    return sorted[i < n ? i : n - 1];
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

    return (x > y) - (x < y);
}

void
rb_sort_i64(int64_t *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_i64);
}

size_t
rb_parse_list(const char *opt, const char *s, long long *out, size_t max, long long min, long long maxval)
{
    size_t      n = 0;
    const char *p = s;

    for (;;) {
        char     *end;
        long long v;

        errno = 0;
        v = strtoll(p, &end, 10);
        if (end == p || errno != 0)
            rb_die_usage("%s: \"%s\" is not a comma list of whole numbers (like 1,2,4 or 250k,1M)", opt, s);
        /* k and M: sizes such as 250k and 10M are easier to read than 10000000 */
        if (*end == 'k' || *end == 'K') {
            v *= 1000;
            end++;
        } else if (*end == 'M' || *end == 'm') {
            v *= 1000000;
            end++;
        }
        if (v < min || v > maxval)
            rb_die_usage("%s: %lld is out of range (%lld..%lld)", opt, v, min, maxval);
        if (n == max)
            rb_die_usage("%s: at most %zu values", opt, max);
        out[n++] = v;
        if (*end == '\0')
            return n;
        if (*end != ',')
            rb_die_usage("%s: \"%s\" is not a comma list of whole numbers (like 1,2,4 or 250k,1M)", opt, s);
        p = end + 1;
    }
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    remove(path);
    return 0;
}

void
rb_rmtree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
