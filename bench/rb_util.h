/* rb_util.h - what every part of rhino-bench uses: errors, clocks, growing strings, JSON text, percentiles. */
#ifndef RB_UTIL_H
#define RB_UTIL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* Set by the SIGINT/SIGTERM handler; the loops check it and give up cleanly. */
extern volatile sig_atomic_t rb_interrupted;
/* Called before an error or warning is printed (the progress bar clears its line). */
extern void (*rb_before_message)(void);

/* Print "rhino-bench: ..." to stderr and exit 1 (atexit stops a running rhino). */
void rb_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* A bad command line: the message, a hint at --help, exit 2 (nothing has started yet). */
void rb_die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void rb_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* rb_die if the user pressed Ctrl-C (exit 130 instead of 1). */
void rb_check_interrupt(void);

double  rb_mono(void);          /* CLOCK_MONOTONIC, seconds */
int64_t rb_realtime_us(void);   /* CLOCK_REALTIME, microseconds since the epoch */
void    rb_sleep(double seconds);

void *rb_xmalloc(size_t n);
char *rb_xstrdup(const char *s);

/* A growing NUL-terminated string. */
typedef struct {
    char   *data;
    size_t  len, cap;
} rb_buf_t;

void rb_buf_add(rb_buf_t *b, const char *s, size_t n);
void rb_buf_puts(rb_buf_t *b, const char *s);
void rb_buf_printf(rb_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rb_buf_free(rb_buf_t *b);

/*
 * One JSON value written front to back: objects and arrays nest, commas
 * and quoting are taken care of.  A key is given inside an object and NULL
 * inside an array.  Non-finite numbers become null.
 */
#define RB_JSON_DEPTH 16
typedef struct {
    rb_buf_t b;
    int      depth;
    int      count[RB_JSON_DEPTH];  /* members written so far at each level */
} rb_json_t;

void rb_json_begin(rb_json_t *j, const char *key);        /* { */
void rb_json_end(rb_json_t *j);                           /* } */
void rb_json_begin_array(rb_json_t *j, const char *key);  /* [ */
void rb_json_end_array(rb_json_t *j);                     /* ] */
void rb_json_str(rb_json_t *j, const char *key, const char *val);   /* NULL: null */
void rb_json_int(rb_json_t *j, const char *key, long long val);
void rb_json_num(rb_json_t *j, const char *key, double val, int decimals);
void rb_json_bool(rb_json_t *j, const char *key, int val);
void rb_json_null(rb_json_t *j, const char *key);
void rb_json_raw(rb_json_t *j, const char *key, const char *json);  /* a value already in JSON */

/* "1,234,567" */
const char *rb_fmt_int(char *buf, size_t size, long long v);

/*
 * Nearest-rank percentile of sorted values (the same definition as the
 * peers' benchmarks): the smallest value with at least p% of the values at
 * or below it.  n must be > 0.
 */
int64_t rb_percentile(const int64_t *sorted, size_t n, double p);
void    rb_sort_i64(int64_t *v, size_t n);

/* Parse a comma list of positive integers ("1,2,4"); returns how many, dies naming opt on bad input. */
size_t rb_parse_list(const char *opt, const char *s, long long *out, size_t max, long long min, long long maxval);

/* Delete a directory tree (files, subdirectories, the directory), not following symlinks; best effort. */
void rb_rmtree(const char *path);

#endif
