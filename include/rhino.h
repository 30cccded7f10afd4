/*
 * rhino.h - the one public header of Rhino: the handler ABI.
 *
 * A handler is a function in a shared object that rhino loads with dlopen():
 *
 *     #include <rhino.h>
 *
 *     static int send_invoice(rhino_job *job)
 *     {
 *         const char *json = rhino_job_payload(job);
 *         if (!do_it(json)) {
 *             rhino_job_set_error(job, "mail server said %d", code);
 *             return RHINO_RETRY;
 *         }
 *         return RHINO_OK;
 *     }
 *     RHINO_HANDLER("send_invoice", send_invoice);
 *
 * Build it with:  cc -shared -fPIC $(pkg-config --cflags rhino) -o invoices.so invoices.c
 *
 * Several RHINO_HANDLER lines may appear in one shared object (in one or in
 * several translation units).  Each registration records RHINO_ABI_VERSION,
 * which the loader compares with its own: a shared object built against
 * another ABI is refused at start with a message that says so.
 *
 * The rhino_job accessors are exported by the rhino executable; a handler
 * .so needs no library of its own to link against.
 */
#ifndef RHINO_H
#define RHINO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever rhino_handler_def or the meaning of an accessor changes. */
#ifndef RHINO_ABI_VERSION
#define RHINO_ABI_VERSION 1
#endif

/* What a handler returns. */
#define RHINO_OK      0   /* done: the job becomes 'completed' */
#define RHINO_RETRY   1   /* failed: retried with backoff until max_attempts */
#define RHINO_DISCARD 2   /* failed for good: the job becomes 'discarded' now */
#define RHINO_SNOOZE  3   /* not now: run again after the delay of rhino_job_snooze(), no error counted */

typedef struct rhino_job rhino_job;
typedef int (*rhino_handler_fn)(rhino_job *job);

/* Flags of a registration. */
#define RHINO_F_TX    0x1u  /* transactional: runs inside the worker's transaction */

struct pg_conn;             /* libpq's PGconn */

/*
 * One registration, as placed by RHINO_HANDLER in the section
 * "rhino_handlers" of the shared object.  abi stays the first member in
 * every future version so that the loader can always read it.
 */
typedef struct rhino_handler_def {
    uint32_t         abi;
    uint32_t         flags;     /* RHINO_F_* */
    const char      *kind;
    rhino_handler_fn fn;
    const char      *file;      /* source file, for error messages */
    int              line;
} rhino_handler_def;

/* Job accessors, valid only while the handler runs. */
int64_t     rhino_job_id(const rhino_job *job);
int         rhino_job_attempt(const rhino_job *job);
int         rhino_job_max_attempts(const rhino_job *job);
const char *rhino_job_kind(const rhino_job *job);
const char *rhino_job_queue(const rhino_job *job);
/* The payload as PostgreSQL prints the jsonb value, NUL-terminated. */
const char *rhino_job_payload(const rhino_job *job);
size_t      rhino_job_payload_len(const rhino_job *job);
/* Record why the job failed (kept as last_error; truncated at 2000 bytes). */
void        rhino_job_set_error(rhino_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Push this job's deadline to `seconds` from now (never earlier than it
 * is).  Past its deadline ([worker] job_timeout, or the job's own timeout)
 * the master kills the worker and the job is retried as a timeout.  A job
 * without a deadline (a timeout of 0) keeps having none: this does nothing.
 */
void        rhino_job_extend(rhino_job *job, double seconds);

/*
 * Transactional handlers only (RHINO_TX_HANDLER): the worker's connection,
 * inside an open transaction that also records the job's completion.  Use
 * synchronous libpq calls (PQexecParams...).  Do not COMMIT, ROLLBACK or
 * change session state (SET, LISTEN, temp tables, advisory locks).  If a
 * statement fails, the job's own writes are rolled back (it runs under a
 * SAVEPOINT) and the job is retried.  A handler that ends the transaction
 * itself has its job discarded with an error saying so, and the jobs that
 * ran before it in the same transaction are retried, since their writes
 * may be gone (or, after a COMMIT, they run twice).  Returns NULL for
 * other handlers.
 */
struct pg_conn *rhino_job_conn(rhino_job *job);

/*
 * Snooze: `return rhino_job_snooze(job, 30);` runs the job again in 30
 * seconds (0 = as soon as a worker is free) without counting an error
 * against max_attempts.  Returns RHINO_SNOOZE.  Returning RHINO_SNOOZE
 * without calling it snoozes for 1 second.  A delay above
 * RHINO_SNOOZE_MAX (INFINITY included) snoozes for RHINO_SNOOZE_MAX; a
 * negative one or NaN means 0.
 */
#define RHINO_SNOOZE_MAX (365.0 * 86400)   /* seconds: one year */
int         rhino_job_snooze(rhino_job *job, double seconds);

/*
 * Non-zero once someone asked to cancel this running job (rhinoctl cancel,
 * SELECT rhino.cancel(id)).  A long handler should look now and then, stop
 * and return; the job then ends 'cancelled' (unless the handler returns
 * RHINO_OK) and is never retried.  A handler that does not stop within
 * [worker] cancel_grace seconds has its worker killed.
 */
int         rhino_job_cancelled(const rhino_job *job);

#define RHINO_CAT_(a, b) a##b
#define RHINO_CAT(a, b)  RHINO_CAT_(a, b)

/*
 * Register fn as the handler of jobs of kind KIND.  The pointer to the
 * definition goes into the "rhino_handlers" section; the linker provides
 * __start_/__stop_ symbols bounding that section in each shared object,
 * which rhino_module_handlers() below hands to the loader.
 */
#define RHINO_HANDLER_FLAGS(KIND, FN, FLAGS)                                  \
    static const rhino_handler_def RHINO_CAT(rhino_def_, __LINE__) = {        \
        RHINO_ABI_VERSION, (FLAGS), (KIND), (FN), __FILE__, __LINE__ };       \
    static const rhino_handler_def *const RHINO_CAT(rhino_ptr_, __LINE__)     \
        __attribute__((used, section("rhino_handlers"))) =                    \
        &RHINO_CAT(rhino_def_, __LINE__)

#define RHINO_HANDLER(KIND, FN) RHINO_HANDLER_FLAGS(KIND, FN, 0)

/*
 * Register a transactional handler: its database writes on rhino_job_conn()
 * commit in the same transaction as the job's fenced completion, so they
 * commit exactly once.  Many jobs share one transaction, one SAVEPOINT each.
 */
#define RHINO_TX_HANDLER(KIND, FN) RHINO_HANDLER_FLAGS(KIND, FN, RHINO_F_TX)

#ifndef RHINO_INTERNAL
extern const rhino_handler_def *const __start_rhino_handlers[]
    __attribute__((weak, visibility("hidden")));
extern const rhino_handler_def *const __stop_rhino_handlers[]
    __attribute__((weak, visibility("hidden")));

/*
 * The symbol the loader looks up with dlsym().  Weak, so that every
 * translation unit of a .so may define it and the linker keeps one.
 */
__attribute__((weak, visibility("default"))) const rhino_handler_def *const *
rhino_module_handlers(size_t *n);
__attribute__((weak, visibility("default"))) const rhino_handler_def *const *
rhino_module_handlers(size_t *n)
{
    if (__start_rhino_handlers == NULL || __stop_rhino_handlers == NULL) {
        *n = 0;
        return NULL;
    }
    *n = (size_t) (__stop_rhino_handlers - __start_rhino_handlers);
    return __start_rhino_handlers;
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* RHINO_H */
