/* rh_migrate.h - applying the schema migrations compiled in from sql/. */
#ifndef RH_MIGRATE_H
#define RH_MIGRATE_H

#include <stddef.h>
#include <libpq-fe.h>

typedef struct {
    int         version;
    const char *name;
    const char *sql;
} rh_migration_t;

extern const rh_migration_t rh_migrations[];
extern const int            rh_nmigrations;
extern const int            rh_schema_latest;   /* the highest version */

/*
 * Apply every migration newer than the database's version, each in its own
 * transaction, serialized against concurrent migrators by an advisory lock.
 * Idempotent.  *applied receives how many ran.  -1 with err on failure (the
 * failing step is rolled back; earlier steps stay).
 */
int rh_migrate(PGconn *conn, int *applied, char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
