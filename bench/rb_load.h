/*
 * rb_load.h - putting jobs into the queue the ways applications do: one
 * COPY (rhinoctl enqueue --bulk's statement), the C API's
 * rhino_enqueue_many(), many clients calling rhino.enqueue() in
 * transactions, and a steady trickle at a fixed rate.
 */
#ifndef RB_LOAD_H
#define RB_LOAD_H

#include <stdint.h>
#include <libpq-fe.h>

/*
 * n jobs {"n": i} of kind into queue, with Rhino's COPY statement
 * (RH_STMT_CTL_COPY) in one transaction.  Returns the seconds from BEGIN
 * to the COMMIT's return; *first_id and *last_id get the ids the jobs got.
 * label: the progress bar's, or NULL for none.
 */
double rb_load_copy(PGconn *conn, const char *queue, const char *kind, long long n, const char *label,
                    long long *first_id, long long *last_id);

/*
 * n jobs {"n": i} of kind into queue through librhino's rhino_enqueue_many()
 * (include/rhino-client.h), per_call jobs a call, each call a transaction of
 * its own (outside a transaction the call commits by itself), without
 * asking for the ids.  Returns the seconds from the first call to the last
 * return; *first_id gets the id after the sequence's last before the first
 * call (where the progress of running them is counted from).
 */
double rb_load_capi(PGconn *conn, const char *queue, const char *kind, long long n, int per_call,
                    const char *label, long long *first_id);

typedef struct {
    const char *dsn;
    const char *queue;
    const char *kind;
    long long   n;          /* jobs in all */
    int         clients;    /* connections, one thread each */
    int         tx;         /* rhino.enqueue() calls per transaction */
    int         pipeline;   /* send a transaction's calls in one flush (libpq pipeline mode) */
    int         prepare;    /* call a statement prepared once per connection, not an unnamed one */
} rb_sql_load_t;

/* The clients connect first; the time runs from when all start to when the last committed. */
double rb_load_sql(const rb_sql_load_t *l);

typedef struct {
    const char *dsn;
    const char *queue;
    double      rate;       /* jobs per second */
    double      seconds;
    int         clients;    /* connections that take turns; one enqueue is one autocommit call */
    int         prepare;    /* as in rb_sql_load_t */
} rb_trickle_t;

typedef struct {
    long long sent;
    long long late;         /* sent more than 1 ms after their scheduled time (no client was free) */
    double    elapsed;      /* seconds from the first scheduled send to the last return */
    int64_t   t0_us;        /* CLOCK_REALTIME of the first scheduled send */
    long long total;        /* jobs scheduled: the size of acked_us */
    int64_t  *acked_us;     /* per job i: CLOCK_REALTIME when rhino.enqueue() returned, 0 if it
                               failed; malloc'd, the caller frees it */
} rb_trickle_result_t;

/*
 * One bench.stamp job every 1/rate s on an absolute schedule (a slow call
 * does not lower the rate), payload {"t": <CLOCK_REALTIME us just before the
 * call>, "i": i}; out->acked_us[i] says when the call returned.
 */
void rb_load_trickle(const rb_trickle_t *t, rb_trickle_result_t *out);

#endif
