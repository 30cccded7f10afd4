/* rhino_client_sql.h - the SQL that librhino sends, by name. */
#ifndef RHINO_CLIENT_SQL_H
#define RHINO_CLIENT_SQL_H

typedef enum {
    RHC_STMT_ENQUEUE = 0,
    RHC_STMT_ENQUEUE_MANY,
    RHC_STMT_PREPARE_COPY,
    RHC_STMT_COPY,
    RHC_STMT_COPY_ID,
    RHC_STMT_COPY_RUN_AT,
    RHC_STMT_COPY_ID_RUN_AT,
    RHC_STMT_NOTIFY,
    RHC_STMT__COUNT
} rhc_stmt_id_t;

typedef struct {
    rhc_stmt_id_t id;
    const char   *sql;
    int           nparams;
} rhc_stmt_t;

/* Internal to librhino; named with the library's prefix because a static library shares the caller's namespace. */
const rhc_stmt_t *rhino_client_sql(rhc_stmt_id_t id);

#endif
