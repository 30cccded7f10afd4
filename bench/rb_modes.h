/* rb_modes.h - the five measurements of rhino-bench: insert, drain, trickle, scale, bloat. */
#ifndef RB_MODES_H
#define RB_MODES_H

#include <stddef.h>
#include <libpq-fe.h>

#define RB_MAX_LIST 16

/* Everything the command line decided, with the defaults applied. */
typedef struct {
    const char  *mode;
    const char  *dsn;
    const char  *queue;
    const char  *label;
    PGconn      *conn;
    long long    n;                      /* insert, drain, bloat: jobs */
    long long    workers[RB_MAX_LIST];   /* drain: a list (the sweep); other modes: one */
    size_t       nworkers;
    long long    batches[RB_MAX_LIST];
    size_t       nbatches;
    int          reps;
    int          clients;                /* insert: rhino.enqueue clients; trickle: enqueue connections */
    int          tx;                     /* insert: calls per transaction */
    int          per_call;               /* insert: jobs per rhino_enqueue_many() call */
    int          pipeline;
    int          prepare;
    double       rate, seconds, warmup;  /* trickle */
    long long    sizes[RB_MAX_LIST];     /* scale: jobs queued */
    size_t       nsizes;
    long long    first;                  /* scale: K, the jobs timed */
    double       window;                 /* bloat: seconds with the snapshot held */
    double       retention;
    int          metrics;
    int          analyze;                /* ANALYZE rhino.jobs after a load (the peers' default too) */
    const char **sets;
    size_t       nsets;
    double       timeout;                /* the longest any one wait may take */
} rb_opts_t;

/* Each returns 0, or 1 when a run's jobs did not all end completed exactly once (already reported). */
int rb_mode_insert(rb_opts_t *o);
int rb_mode_drain(rb_opts_t *o);
int rb_mode_trickle(rb_opts_t *o);
int rb_mode_scale(rb_opts_t *o);
int rb_mode_bloat(rb_opts_t *o);

#endif
