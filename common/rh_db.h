/* rh_db.h - opening a database connection the same way in every process. */
#ifndef RH_DB_H
#define RH_DB_H

#include <stddef.h>
#include <libpq-fe.h>

#include "rh_sql.h"

/*
 * Blocking connect with the DSN of the config (RHINO_DSN already applied;
 * "" leaves everything to libpq's PG* variables and service files).
 * application_name becomes "rhino <role>" unless the DSN sets one.
 * On failure returns NULL and puts libpq's reason, never the DSN, into err.
 */
PGconn *rh_db_connect(const char *dsn, const char *role, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Check the syntax of a DSN without connecting.  Returns 0, or -1 with
 * libpq's reason in err, its quoted parts blanked: libpq quotes the
 * offending token ("invalid percent-encoded token: \"s%zzcret\""), which can
 * be a password.
 */
int rh_db_check_dsn(const char *dsn, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Start a non-blocking connect (PQconnectStartParams); NULL only on out-of-memory. */
PGconn *rh_db_connect_start(const char *dsn, const char *role);

/*
 * Check that the schema is migrated to RH_SCHEMA_VERSION.  Returns 0, or -1
 * with a message that tells the user what to run.
 */
int rh_db_check_schema(PGconn *conn, char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * The first line of PQerrorMessage/PQresultErrorMessage, without the
 * newline.  When the error is a missing privilege (SQLSTATE 42501), a hint
 * follows, naming the connected role and the README's "Roles and
 * privileges", which lists the grants of each kind of role.
 */
const char *rh_db_error(PGconn *conn, const PGresult *res);

/*
 * The same with a hint of the caller's for a missing privilege, in place of
 * the general one: " (role \"NAME\" " hint ")".
 */
const char *rh_db_error_hint(PGconn *conn, const PGresult *res, const char *hint);

/* What rhinoctl migrate says when its role may not change the schema. */
#define RH_DB_HINT_MIGRATE \
    "may not change Rhino's schema: rhinoctl migrate runs as the owner of schema rhino or, before there" \
    " is one, as a role with CREATE on the database; see README, \"Roles and privileges\""

/*
 * Run statement id of the statement table (blocking, parameters bound).  Its
 * result, for the caller to clear; or NULL after logging "[what: ]name
 * failed: reason" (what may be NULL).
 */
PGresult *rh_db_exec(PGconn *conn, rh_stmt_id_t id, const char *const *params, const char *what);
/*
 * The same for a statement without parameters, run with JIT compilation off
 * in its own transaction (set_config(..., true) and the statement in one
 * simple-protocol message: one round trip, no session state).
 */
PGresult *rh_db_exec_nojit(PGconn *conn, rh_stmt_id_t id, const char *what);
#define RH_DB_NOJIT "SELECT set_config('jit', 'off', true); "

/*
 * v as one element of an array literal: in double quotes, with " and \
 * escaped.  Written to dst, which must hold RH_DB_QUOTED_MAX(strlen(v))
 * bytes; returns how many it wrote (no NUL).
 */
#define RH_DB_QUOTED_MAX(len) (2 * (len) + 2)
size_t rh_db_array_quote(char *dst, const char *v);

/*
 * items[0..n-1] as a text[] literal, each element quoted and escaped:
 * {"a","b \"c\""}.  malloc'd; NULL on out-of-memory.
 */
char *rh_db_text_array(char *const *items, int n);

#endif
