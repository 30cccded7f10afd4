/* rh_migrate.c - applying the schema migrations compiled in from sql/, one transaction per step. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rh_db.h"
#include "rh_migrate.h"

/*
 * The advisory lock that serializes migrators: "rhinomig" in ASCII, so that
 * it is recognisable in pg_locks (classid 0x7268696e, objid 0x6f6d6967) and
 * unlikely to collide with an application's own keys.
 */
#define RH_MIGRATE_LOCK_KEY "8243955040938453351"

/*
 * The bookkeeping table is created outside the numbered migrations because
 * the runner needs it to know where it stands.  The schema is created only
 * when missing: CREATE SCHEMA checks the CREATE privilege on the database
 * even with IF NOT EXISTS, and the least a migrating role needs is to own a
 * schema rhino that an administrator made for it (CREATE SCHEMA rhino
 * AUTHORIZATION ...; README, "Roles and privileges").  client_min_messages
 * keeps libpq from printing a NOTICE should a step ever raise one.
 */
static const char rh_migrate_bootstrap_sql[] =
    "BEGIN;"
    " SET LOCAL client_min_messages = warning;"
    " DO $$BEGIN IF to_regnamespace('rhino') IS NULL THEN CREATE SCHEMA rhino; END IF; END$$;"
    " CREATE TABLE IF NOT EXISTS rhino.schema_migrations ("
    "   version    int         PRIMARY KEY,"
    "   name       text        NOT NULL,"
    "   applied_at timestamptz NOT NULL DEFAULT now());"
    " COMMIT";

static void
mig_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
mig_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Run sql; 0 if its result has the expected status, else -1 and the message in err. */
static int
mig_exec(PGconn *conn, const char *sql, ExecStatusType want, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    int       rc = 0;

    if (PQresultStatus(res) != want) {
        mig_err(err, errlen, "%s: %s", what, rh_db_error_hint(conn, res, RH_DB_HINT_MIGRATE));
        rc = -1;
    }
    PQclear(res);
    return rc;
}

/*
 * Line number in sql of PostgreSQL's error position (1-based, in characters).
 * With the simple query protocol the position counts from the start of the
 * whole multi-statement string, which is the whole file.  0 if unknown.
 */
static int
mig_error_line(const PGresult *res, const char *sql)
{
    const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
    long        want, chars = 0;
    int         line = 1;

    if (pos == NULL || (want = strtol(pos, NULL, 10)) <= 0)
        return 0;
    for (const char *p = sql; *p; p++) {
        /* count characters, not bytes: skip UTF-8 continuation bytes */
        if (((unsigned char) *p & 0xC0) != 0x80 && ++chars >= want)
            return line;
        if (*p == '\n')
            line++;
    }
    return 0;
}

/* One migration in its own transaction, recorded in the same transaction. */
static int
mig_apply(PGconn *conn, const rh_migration_t *m, char *err, size_t errlen)
{
    char        ver[16], what[160];
    const char *params[2];
    PGresult   *res;
    int         line;

    snprintf(what, sizeof(what), "migration sql/%s.sql", m->name);
    if (mig_exec(conn, "BEGIN", PGRES_COMMAND_OK, what, err, errlen) < 0)
        return -1;

    /* PQexec, not PQexecParams: the simple protocol accepts several statements */
    res = PQexec(conn, m->sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        line = mig_error_line(res, m->sql);
        if (line > 0)
            mig_err(err, errlen, "migration sql/%s.sql failed at line %d: %s", m->name, line,
                    rh_db_error_hint(conn, res, RH_DB_HINT_MIGRATE));
        else
            mig_err(err, errlen, "migration sql/%s.sql failed: %s", m->name, rh_db_error_hint(conn, res, RH_DB_HINT_MIGRATE));
        PQclear(res);
        goto rollback;
    }
    PQclear(res);

    snprintf(ver, sizeof(ver), "%d", m->version);
    params[0] = ver;
    params[1] = m->name;
    res = PQexecParams(conn, "INSERT INTO rhino.schema_migrations (version, name) VALUES ($1::int, $2)",
                       2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        mig_err(err, errlen, "%s: cannot record it: %s", what, rh_db_error_hint(conn, res, RH_DB_HINT_MIGRATE));
        PQclear(res);
        goto rollback;
    }
    PQclear(res);

    /* a COMMIT of a failed transaction "succeeds" as ROLLBACK: check the tag */
    res = PQexec(conn, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK || strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        mig_err(err, errlen, "%s: commit failed: %s", what, rh_db_error_hint(conn, res, RH_DB_HINT_MIGRATE));
        PQclear(res);
        goto rollback;
    }
    PQclear(res);
    return 0;

rollback:
    /* keep the first error; the ROLLBACK's own failure (lost connection) adds nothing */
    PQclear(PQexec(conn, "ROLLBACK"));
    return -1;
}

static int
mig_cmp(const void *a, const void *b)
{
    const rh_migration_t *x = *(const rh_migration_t *const *) a;
    const rh_migration_t *y = *(const rh_migration_t *const *) b;

    return (x->version > y->version) - (x->version < y->version);
}

int
rh_migrate(PGconn *conn, int *applied, char *err, size_t errlen)
{
    const rh_migration_t **order = NULL;
    PGresult              *res;
    int                    current, rc = -1;

    *applied = 0;
    if (rh_nmigrations > 0) {
        order = calloc((size_t) rh_nmigrations, sizeof(*order));
        if (order == NULL) {
            mig_err(err, errlen, "out of memory");
            return -1;
        }
    }
    /* embed.sh keeps the order of its arguments; do not trust it to be numeric */
    for (int i = 0; i < rh_nmigrations; i++)
        order[i] = &rh_migrations[i];
    if (rh_nmigrations > 1)
        qsort(order, (size_t) rh_nmigrations, sizeof(*order), mig_cmp);
    for (int i = 1; i < rh_nmigrations; i++)
        if (order[i]->version == order[i - 1]->version) {
            mig_err(err, errlen, "migrations sql/%s.sql and sql/%s.sql have the same version %d",
                    order[i - 1]->name, order[i]->name, order[i]->version);
            free(order);
            return -1;
        }

    /*
     * A session lock, held across the per-step transactions: a second
     * migrator waits here and then finds the steps done.  Not behind a
     * transaction-mode pooler, so the session is ours until we unlock.
     */
    if (mig_exec(conn, "SELECT pg_advisory_lock(" RH_MIGRATE_LOCK_KEY ")", PGRES_TUPLES_OK,
                 "cannot take the migration lock", err, errlen) < 0) {
        free(order);
        return -1;
    }

    /*
     * Create the bookkeeping only when missing: CREATE SCHEMA checks the
     * CREATE privilege on the database even with IF NOT EXISTS, and a user
     * who owns the schema but not the database must still be able to re-run
     * (and, since the bootstrap creates the schema only when missing, to run
     * the first migrate in a schema made for it).
     */
    res = PQexec(conn, "SELECT to_regclass('rhino.schema_migrations') IS NOT NULL");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mig_err(err, errlen, "cannot look for rhino.schema_migrations: %s", rh_db_error_hint(conn, res, RH_DB_HINT_MIGRATE));
        PQclear(res);
        goto unlock;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        PQclear(res);
        if (mig_exec(conn, rh_migrate_bootstrap_sql, PGRES_COMMAND_OK,
                     "cannot create rhino.schema_migrations", err, errlen) < 0) {
            PQclear(PQexec(conn, "ROLLBACK"));
            goto unlock;
        }
    } else {
        PQclear(res);
    }

    res = PQexec(conn, "SELECT coalesce(max(version), 0) FROM rhino.schema_migrations");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mig_err(err, errlen, "cannot read the schema version: %s", rh_db_error_hint(conn, res, RH_DB_HINT_MIGRATE));
        PQclear(res);
        goto unlock;
    }
    current = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);

    for (int i = 0; i < rh_nmigrations; i++) {
        if (order[i]->version <= current)
            continue;
        if (mig_apply(conn, order[i], err, errlen) < 0)
            goto unlock;
        (*applied)++;
    }
    rc = 0;

unlock:
    /*
     * Explicit unlock even on failure: the caller may keep the connection.
     * If the connection is gone the server dropped the lock with it.
     */
    PQclear(PQexec(conn, "SELECT pg_advisory_unlock(" RH_MIGRATE_LOCK_KEY ")"));
    free(order);
    return rc;
}
