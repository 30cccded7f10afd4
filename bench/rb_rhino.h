/* rb_rhino.h - the rhino under test: found, configured, started, watched, scraped and stopped by rhino-bench. */
#ifndef RB_RHINO_H
#define RB_RHINO_H

#include <sys/resource.h>
#include <sys/types.h>
#include <libpq-fe.h>

/* What the generated config says. */
typedef struct {
    const char         *dsn;          /* given to rhino as RHINO_DSN, never written to a file */
    const char         *queue;        /* the only queue it serves */
    int                 workers;      /* [worker] processes */
    int                 batch;        /* [worker] batch_size */
    double              retention;    /* [retention] completed, seconds */
    int                 metrics;      /* serve /metrics on a free 127.0.0.1 port */
    const char *const  *sets;         /* --set SECTION.KEY=VALUE, overriding or adding lines */
    size_t              nsets;
    const char         *stamp_file;   /* RHINO_BENCH_STAMP_FILE for bench.stamp, or NULL */
} rb_rhino_conf_t;

typedef struct {
    pid_t         pid;                /* 0 when not running */
    int           seq;                /* the how-many-th rhino of this run */
    char          node[64];           /* [master] name: finds its workers in rhino.workers */
    int           metrics_port;       /* 0 when /metrics is off */
    char          ini[4352];
    char          log[4352];
    double        started;            /* rb_mono() just before the fork */
    struct rusage ru;                 /* of rhino and every child it waited for, after it exited */
    int           status;             /* exit code, or 128 + signal */
} rb_rhino_t;

/*
 * Find the rhino executable (--rhino, else next to rhino-bench, else ../sbin,
 * else the configured sbindir, else $PATH) and the bench handlers (--handlers,
 * else bench/ next to rhino-bench, else the installed $(pkglibdir)/bench).  Dies
 * saying what it looked for.
 */
void        rb_rhino_locate(const char *argv0, const char *rhino_opt, const char *handlers_opt);
const char *rb_rhino_path(void);
const char *rb_rhino_handlers(void);

/* The scratch directory of this run (configs, logs, stamp files); removed at exit unless keep. */
const char *rb_tmpdir(void);
void        rb_tmpdir_keep(int keep);

/*
 * Write a config and start rhino with it.  The first start of a run checks
 * the config with `rhino -t` first, so that a bad --set or handler path is
 * reported as such and not as a measurement that never ends.
 */
void      rb_rhino_start(rb_rhino_t *r, const rb_rhino_conf_t *c);
/* Dies with what, and the end of rhino's log. */
void      rb_rhino_fail(rb_rhino_t *r, const char *what) __attribute__((noreturn));
/* Dies with the end of rhino's log if rhino has exited. */
void      rb_rhino_alive(rb_rhino_t *r);
/* Wait until `workers` workers of this rhino are registered (they claim from then on). */
void      rb_rhino_wait_workers(rb_rhino_t *r, PGconn *conn, int workers, double timeout);
/* The sum of every sample of the counter `name` on /metrics, or -1 if it is not there. */
long long rb_rhino_metric(rb_rhino_t *r, const char *name);
/* SIGTERM, wait for the exit (dies after timeout), take its resource usage. */
void      rb_rhino_stop(rb_rhino_t *r, double timeout);
/* After a stop: wait until rhino's backends have gone (their statistics are flushed when they exit). */
void      rb_rhino_wait_backends_gone(PGconn *conn, double timeout);
/* atexit: a rhino still running is stopped, the scratch directory removed. */
void      rb_rhino_cleanup(void);

#endif
