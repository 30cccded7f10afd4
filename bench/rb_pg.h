/*
 * rb_pg.h - rhino-bench's own SQL, by name: the measurements it takes of
 * PostgreSQL and of the rhino schema, and rhino.enqueue() called as an
 * application calls it.  The COPY is Rhino's own (rhinoctl enqueue --bulk's
 * RH_STMT_CTL_COPY in common/rh_sql.c).
 */
#ifndef RB_PG_H
#define RB_PG_H

#include <stddef.h>
#include <libpq-fe.h>

typedef enum {
    RB_SQL_ENQUEUE = 0,
    RB_SQL_FACTS,
    RB_SQL_FOREIGN_JOBS,
    RB_SQL_LIVE_NODES,
    RB_SQL_RESET,
    RB_SQL_ANALYZE,
    RB_SQL_VACUUM,
    RB_SQL_CHECKPOINT,
    RB_SQL_BEGIN,
    RB_SQL_COMMIT,
    RB_SQL_NOW,
    RB_SQL_LAST_ID,
    RB_SQL_SEQ_LAST,
    RB_SQL_CLOCK,
    RB_SQL_DRAIN_POLL,
    RB_SQL_RANGE_DONE,
    RB_SQL_KIND_DONE,
    RB_SQL_WAL_DIFF,
    RB_SQL_FLUSH_STATS,
    RB_SQL_XACT_COMMIT,
    RB_SQL_RHINO_BACKENDS,
    RB_SQL_WORKERS_LIVE,
    RB_SQL_COUNTS,
    RB_SQL_FIRST_CLAIM,
    RB_SQL_COMPLETION_LATENCY,
    RB_SQL_DONE_BETWEEN,
    RB_SQL_DONE_MAX_ID,
    RB_SQL_TABLE_STATS,
    RB_SQL_HOLD_BEGIN,
    RB_SQL_HOLD_READ,
    RB_SQL__COUNT
} rb_sql_id_t;

/* Connect (dies with libpq's reason, never the DSN); application_name "rhino-bench". */
PGconn     *rb_pg_connect(const char *dsn);
/*
 * Run statement id with its parameters (NULL = SQL NULL); dies naming what
 * the statement is for and PostgreSQL's message.  Counts the statements it
 * ran (rb_pg_statements), so that the harness can take its own commits out
 * of pg_stat_database's.
 */
PGresult   *rb_pg_run(PGconn *conn, rb_sql_id_t id, const char *const *params);
void        rb_pg_do(PGconn *conn, rb_sql_id_t id, const char *const *params);       /* result discarded */
long long   rb_pg_int(PGconn *conn, rb_sql_id_t id, const char *const *params);      /* first column, 0 if NULL */
int         rb_pg_bool(PGconn *conn, rb_sql_id_t id, const char *const *params);     /* first column is true */
double      rb_pg_float(PGconn *conn, rb_sql_id_t id, const char *const *params);
/* Run it; 0, or -1 with PostgreSQL's message in err (for statements that may be refused, like CHECKPOINT). */
int         rb_pg_try(PGconn *conn, rb_sql_id_t id, const char *const *params, char *err, size_t errlen);
const char *rb_pg_sql(rb_sql_id_t id);
int         rb_pg_nparams(rb_sql_id_t id);

extern long long rb_pg_statements;

#endif
