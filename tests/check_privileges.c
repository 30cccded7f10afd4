/*
 * check_privileges.c - least privilege (sql/017_privileges.sql, README
 * "Roles and privileges"): a schema migrated by a role that is no superuser,
 * the README's grants run as written for an application, a bulk producer,
 * monitoring and a daemon role, each role then doing what it is for and
 * refused the rest; the SECURITY DEFINER functions proof against a caller's
 * search_path; the daemon, as the owner and as a role apart, running the
 * application's jobs; and errors that name the role and the README section.
 *
 * Roles are the cluster's, not a test database's: each gets a name of this
 * run's own (rt_role_create) and is dropped when the test ends, so the suite
 * runs twice on one cluster.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rhino-client.h>

#include "rh_testlib.h"

/* One database migrated by a plain owner role, and a role of each kind with the README's grants. */
typedef struct {
    char   *dsn;                /* the superuser's */
    char   *owner, *app, *bulk, *monitor, *stats, *daemon;
    char   *owner_dsn, *app_dsn, *bulk_dsn, *monitor_dsn, *stats_dsn, *daemon_dsn;
    PGconn *super, *as_owner, *as_app;
} pv_t;

/* ---- helpers --------------------------------------------------------------- */

/* sql must fail for want of a privilege (SQLSTATE 42501). */
static void
denied(PGconn *conn, const char *sql)
{
    PGresult   *res = PQexec(conn, sql);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "not refused: %s", sql);
    ck_assert_msg(state != NULL && strcmp(state, "42501") == 0, "refused with %s, not 42501: %s\n  %s",
                  state ? state : "(none)", PQresultErrorMessage(res), sql);
    PQclear(res);
}

/* Replace every occurrence of from in s by to (malloc'd). */
static char *
replace_all(const char *s, const char *from, const char *to)
{
    size_t      n = 0, flen = strlen(from), tlen = strlen(to);
    const char *p;
    char       *out, *o;

    for (p = s; (p = strstr(p, from)) != NULL; p += flen)
        n++;
    out = malloc(strlen(s) + n * tlen + 1);
    ck_assert_ptr_nonnull(out);
    for (o = out, p = s;;) {
        const char *hit = strstr(p, from);

        if (hit == NULL)
            break;
        memcpy(o, p, (size_t) (hit - p));
        o += hit - p;
        memcpy(o, to, tlen);
        o += tlen;
        p = hit + flen;
    }
    strcpy(o, p);
    return out;
}

/*
 * The README's grants for role (as the README names it: "rhino_app"): the
 * SQL block after a "*Tested:*" in "Roles and privileges" that names it,
 * with the name replaced by this run's.  So the test runs the README's
 * grants, not a copy of them.
 */
static char *
readme_grants(const char *readme_role, const char *name)
{
    char        path[4096], *readme, *block = NULL, *sql;
    const char *p, *end;

    snprintf(path, sizeof(path), "%s/../README.md", rt_env("RHINO_TEST_SRCDIR"));
    readme = rt_read_file(path);
    ck_assert_ptr_nonnull(readme);
    p = strstr(readme, "\n## Roles and privileges\n");
    ck_assert_msg(p != NULL, "README.md has no section \"Roles and privileges\"");
    end = strstr(p + 1, "\n## ");
    while ((p = strstr(p, "*Tested:*")) != NULL && (end == NULL || p < end)) {
        const char *start = strstr(p, "```sql\n"), *stop;

        ck_assert_ptr_nonnull(start);
        start += 7;
        stop = strstr(start, "```");
        ck_assert_ptr_nonnull(stop);
        block = strndup(start, (size_t) (stop - start));
        ck_assert_ptr_nonnull(block);
        if (strstr(block, readme_role) != NULL)
            break;
        free(block);
        block = NULL;
        p = stop;
    }
    ck_assert_msg(block != NULL, "README's \"Roles and privileges\" has no tested block for %s", readme_role);
    sql = replace_all(block, readme_role, name);
    free(block);
    free(readme);
    return sql;
}

static void
grant_as_readme(pv_t *p, const char *readme_role, const char *name)
{
    char *sql = readme_grants(readme_role, name);

    rt_exec(p->super, sql);
    free(sql);
}

/*
 * The README's setup (a): the administrator makes schema rhino for a plain
 * owner role, which migrates; then every other role with its grants.
 */
static void
pv_setup(pv_t *p)
{
    char *out = NULL, *err = NULL;
    int   rc;

    memset(p, 0, sizeof(*p));
    p->dsn = rt_db_create();
    p->super = rt_connect(p->dsn);
    p->owner = rt_role_create("owner", "LOGIN");
    p->app = rt_role_create("app", "LOGIN");
    p->bulk = rt_role_create("bulk", "LOGIN");
    p->monitor = rt_role_create("monitor", "LOGIN");
    p->stats = rt_role_create("stats", "LOGIN");
    p->daemon = rt_role_create("daemon", "LOGIN");
    p->owner_dsn = rt_dsn_as(p->dsn, p->owner);
    p->app_dsn = rt_dsn_as(p->dsn, p->app);
    p->bulk_dsn = rt_dsn_as(p->dsn, p->bulk);
    p->monitor_dsn = rt_dsn_as(p->dsn, p->monitor);
    p->stats_dsn = rt_dsn_as(p->dsn, p->stats);
    p->daemon_dsn = rt_dsn_as(p->dsn, p->daemon);

    rt_execf(p->super, "CREATE SCHEMA rhino AUTHORIZATION \"%s\"", p->owner);
    rc = rt_ctl(p->owner_dsn, NULL, &out, &err, "migrate", NULL);
    ck_assert_msg(rc == 0, "migrate as the owner exited %d: %s", rc, err);
    free(out);
    free(err);

    grant_as_readme(p, "rhino_app", p->app);
    grant_as_readme(p, "rhino_bulk", p->bulk);
    grant_as_readme(p, "rhino_monitor", p->monitor);
    grant_as_readme(p, "rhino_stats", p->stats);
    grant_as_readme(p, "rhino_daemon", p->daemon);
    p->as_owner = rt_connect(p->owner_dsn);
    p->as_app = rt_connect(p->app_dsn);
}

static void
pv_teardown(pv_t *p)
{
    PQfinish(p->as_app);
    PQfinish(p->as_owner);
    PQfinish(p->super);
}

/* ---- the owner ----------------------------------------------------------- */

/* Migrated by a plain role, which then owns everything in the schema; a second migrate finds it done. */
START_TEST(test_owner_is_no_superuser)
{
    pv_t  p;
    char *out = NULL, *err = NULL;
    int   rc;

    pv_setup(&p);
    ck_assert_int_eq(rt_query_longf(p.super, "SELECT count(*) FROM pg_roles WHERE rolname = '%s'"
                                     " AND NOT rolsuper AND NOT rolcreatedb AND NOT rolcreaterole", p.owner), 1);
    ck_assert_int_eq(rt_query_longf(p.super, "SELECT count(*) FROM pg_class WHERE relnamespace = 'rhino'::regnamespace"
                                     " AND relowner <> '\"%s\"'::regrole", p.owner), 0);
    ck_assert_int_eq(rt_query_longf(p.super, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'rhino'::regnamespace"
                                     " AND proowner <> '\"%s\"'::regrole", p.owner), 0);
    /* no right on the database beyond PUBLIC's */
    ck_assert_int_eq(rt_query_longf(p.super, "SELECT count(*) FROM pg_database WHERE datname = current_database()"
                                     " AND has_database_privilege('%s', oid, 'CREATE')", p.owner), 0);
    rc = rt_ctl(p.owner_dsn, NULL, &out, &err, "migrate", NULL);
    ck_assert_msg(rc == 0 && strstr(out, "schema already at version") != NULL, "%d: %s%s", rc, out, err);
    free(out);
    free(err);
    pv_teardown(&p);
}
END_TEST

/*
 * A role without the grants is told which role it is and where the grants
 * are: rhinoctl migrate without CREATE on the database, rhino and rhinoctl
 * without any right on the schema.
 */
START_TEST(test_errors_name_role_and_readme)
{
    pv_t        p;
    rt_daemon_t d;
    char       *nobody, *nobody_dsn, *fresh, *out = NULL, *err = NULL, *log;
    int         rc;

    pv_setup(&p);
    nobody = rt_role_create("nobody", "LOGIN");
    nobody_dsn = rt_dsn_as(p.dsn, nobody);

    /* a database without schema rhino: migrate needs CREATE on it */
    fresh = rt_dsn_as(rt_db_create(), nobody);
    rc = rt_ctl(fresh, NULL, &out, &err, "migrate", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "permission denied for database") != NULL, "%s", err);
    ck_assert_msg(strstr(err, nobody) != NULL && strstr(err, "with CREATE on the database") != NULL
                  && strstr(err, "\"Roles and privileges\"") != NULL, "no hint: %s", err);
    free(out);
    free(err);

    /* rhinoctl on a schema it may not use */
    rc = rt_ctl(nobody_dsn, NULL, &out, &err, "stats", NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "cannot read the schema version") != NULL && strstr(err, nobody) != NULL
                  && strstr(err, "the role that ran \"rhinoctl migrate\"") != NULL
                  && strstr(err, "\"Roles and privileges\"") != NULL, "%s", err);
    free(out);
    free(err);

    /* the daemon: fails at start, saying the same */
    rt_daemon_setup_dsn(&d, nobody_dsn, NULL);
    d.allow_errors = 1;
    rt_daemon_start(&d);
    rc = rt_wait_exit(d.pid, 30);
    d.pid = 0;
    log = rt_read_file(d.log);
    ck_assert_msg(rc == 1, "rhino as a role without grants exited %d: %s", rc, log);
    ck_assert_msg(strstr(log, "cannot read the schema version") != NULL && strstr(log, "permission denied") != NULL
                  && strstr(log, nobody) != NULL && strstr(log, "Roles and privileges") != NULL, "%s", log);
    free(log);
    rt_daemon_teardown(&d);

    /* an application role starting rhino: it may read the version, then the node's table refuses it */
    rt_daemon_setup_dsn(&d, strdup(p.app_dsn), NULL);
    d.allow_errors = 1;
    rt_daemon_start(&d);
    rc = rt_wait_exit(d.pid, 30);
    d.pid = 0;
    log = rt_read_file(d.log);
    ck_assert_msg(rc == 1, "rhino as the application exited %d: %s", rc, log);
    ck_assert_msg(strstr(log, "cannot register this node") != NULL && strstr(log, p.app) != NULL
                  && strstr(log, "Roles and privileges") != NULL, "%s", log);
    free(log);
    rt_daemon_teardown(&d);
    pv_teardown(&p);
}
END_TEST

/* ---- the application ----------------------------------------------------- */

/* Enqueue (plain, unique, throttled, scheduled), cancel and schedule as the application. */
START_TEST(test_app_uses_the_functions)
{
    pv_t  p;
    char *out = NULL, *err = NULL, *v, sql[128];
    long  a, b, c, s;
    int   rc;

    pv_setup(&p);
    a = rt_query_long(p.as_app, "SELECT rhino.enqueue('ok', '{\"n\": 1}')");
    b = rt_query_long(p.as_app, "SELECT id FROM rhino.enqueue_job('ok', unique_key => 'k:1')");
    ck_assert_int_eq(rt_query_long(p.as_app, "SELECT id FROM rhino.enqueue_job('ok', unique_key => 'k:1')"
                                             " WHERE existing"), b);
    c = rt_query_long(p.as_app, "SELECT rhino.enqueue('ok', unique_key => 'k:2', unique_for => '1 hour')");
    ck_assert_int_eq(rt_query_long(p.as_app, "SELECT rhino.enqueue('ok', unique_key => 'k:2',"
                                             " unique_for => '1 hour')"), c);
    s = rt_query_long(p.as_app, "SELECT rhino.enqueue('ok', run_at => now() + interval '1 hour', queue => 'later')");
    ck_assert_int_eq(rt_query_longf(p.as_owner, "SELECT count(*) FROM rhino.jobs WHERE id = %ld AND state = 'scheduled'", s),
                     1);
    ck_assert_int_eq(rt_query_longf(p.as_owner, "SELECT count(*) FROM rhino.jobs WHERE id IN (%ld, %ld, %ld)"
                                        " AND state = 'available'", a, b, c), 3);
    ck_assert_int_eq(rt_query_long(p.as_owner, "SELECT count(*) FROM rhino.unique_windows"), 1);

    /* cancel: a waiting job, then again */
    snprintf(sql, sizeof(sql), "SELECT rhino.cancel(%ld)", s);
    v = rt_query1(p.as_app, sql);
    ck_assert_str_eq(v, "cancelled");
    free(v);
    v = rt_query1(p.as_app, sql);
    ck_assert_str_eq(v, "already cancelled");
    free(v);
    ck_assert_int_eq(rt_query_longf(p.as_owner, "SELECT count(*) FROM rhino.jobs_done WHERE id = %ld"
                                        " AND state = 'cancelled'", s), 1);

    /* schedules */
    v = rt_query1(p.as_app, "SELECT rhino.schedule('nightly', '0 3 * * *', 'ok')");
    ck_assert_str_eq(v, "created");
    free(v);
    v = rt_query1(p.as_app, "SELECT rhino.cron_check('*/5 * * * *')::text");
    ck_assert_str_eq(v, "true");
    free(v);
    v = rt_query1(p.as_app, "SELECT rhino.unschedule('nightly')::text");
    ck_assert_str_eq(v, "true");
    free(v);

    /* rhinoctl enqueue as the application (it reads the schema version first) */
    rc = rt_ctl(p.app_dsn, NULL, &out, &err, "enqueue", "ok", "{\"n\": 2}", "--unique-key", "k:3", NULL);
    ck_assert_msg(rc == 0, "rhinoctl enqueue as the application exited %d: %s", rc, err);
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_long(p.as_owner, "SELECT count(*) FROM rhino.jobs WHERE unique_key = 'k:3'"), 1);
    snprintf(sql, sizeof(sql), "%ld", a);
    rc = rt_ctl(p.app_dsn, NULL, &out, &err, "cancel", sql, NULL);
    ck_assert_msg(rc == 0, "rhinoctl cancel as the application exited %d: %s", rc, err);
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_longf(p.as_owner, "SELECT count(*) FROM rhino.jobs_done WHERE id = %ld"
                                        " AND state = 'cancelled'", a), 1);
    pv_teardown(&p);
}
END_TEST

/* Everything but the functions is refused: the tables, the history's payloads, the daemon's functions. */
START_TEST(test_app_cannot_touch_tables)
{
    static const char *const refused[] = {
        "SELECT payload FROM rhino.jobs",
        "SELECT count(*) FROM rhino.jobs",
        "UPDATE rhino.jobs SET priority = -100",
        "DELETE FROM rhino.jobs",
        "INSERT INTO rhino.jobs (kind) VALUES ('ok')",
        "COPY rhino.jobs (kind) FROM STDIN",
        "SELECT payload FROM rhino.jobs_done",
        "SELECT payload FROM rhino.all_jobs",
        "SELECT * FROM rhino.jobs_done_rows",
        "SELECT * FROM rhino.jobs_done_batches",
        "SELECT * FROM rhino.jobs_done_by_id(ARRAY[1::bigint])",
        "DELETE FROM rhino.jobs_done_rows",
        "DELETE FROM rhino.unique_windows",
        "UPDATE rhino.queues SET paused = true",
        "SELECT * FROM rhino.nodes",
        "SELECT nextval('rhino.jobs_id_seq')",
        "SELECT rhino.queue_config('default', max_running => 1)",
        "SELECT * FROM rhino.claim_limited(ARRAY['default'], 10, 1)",
        "SELECT rhino.stale_attempt(1, 1)",
        "SELECT rhino.wake('default')",
        "CREATE FUNCTION rhino.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TABLE rhino.mine (x int)",
        "ALTER FUNCTION rhino.enqueue_job(text, jsonb, text, timestamptz, int, int, float8, text, interval, text)"
        " SECURITY INVOKER",
    };
    pv_t p;
    long id;

    pv_setup(&p);
    id = rt_query_long(p.as_app, "SELECT rhino.enqueue('ok', '{\"secret\": 1}')");
    ck_assert_int_eq(rt_query_longf(p.as_owner, "SELECT count(*) FROM rhino.jobs WHERE id = %ld", id), 1);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        denied(p.as_app, refused[i]);
    /* the job is as it was */
    ck_assert_int_eq(rt_query_longf(p.as_owner, "SELECT count(*) FROM rhino.jobs WHERE id = %ld AND priority = 0"
                                        " AND payload = '{\"secret\": 1}'", id), 1);
    pv_teardown(&p);
}
END_TEST

/*
 * The catalogue: no rhino function executable by PUBLIC, and every
 * SECURITY DEFINER one with its search_path pinned (a later migration that
 * restates one without the clauses, or adds one without the REVOKE, fails
 * here).
 */
START_TEST(test_functions_revoked_and_pinned)
{
    pv_t  p;
    char *v;

    pv_setup(&p);
    ck_assert_int_eq(rt_query_long(p.super, "SELECT count(*) FROM pg_proc f WHERE f.pronamespace = 'rhino'::regnamespace"
                                            "   AND (f.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(f.proacl) a"
                                            "        WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))"), 0);
    v = rt_query1(p.super, "SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc"
                           " WHERE pronamespace = 'rhino'::regnamespace AND prosecdef");
    ck_assert_str_eq(v, "cancel,enqueue_job,schedule,unschedule,wake");
    free(v);
    /*
     * rhino.enqueue stays a plain SQL function, so that the planner inlines
     * it into the caller's query (schema 18): one call of rhino.enqueue_job,
     * which holds the rights.  With SET or SECURITY DEFINER it is planned
     * anew at every call, a quarter of SQL enqueue throughput.
     */
    ck_assert_int_eq(rt_query_long(p.super, "SELECT count(*) FROM pg_proc WHERE oid = 'rhino.enqueue(text, jsonb, text,"
                                            " timestamptz, int, int, float8, text, interval, text)'::regprocedure"
                                            "   AND NOT prosecdef AND proconfig IS NULL AND prolang ="
                                            "       (SELECT oid FROM pg_language WHERE lanname = 'sql')"), 1);
    ck_assert_int_eq(rt_query_long(p.super, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'rhino'::regnamespace"
                                            "   AND prosecdef"
                                            "   AND proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, pg_temp']"),
                     0);
    pv_teardown(&p);
}
END_TEST

/*
 * A caller's search_path cannot reach into the functions: the application
 * puts a schema of its own first, with a now(), a pg_notify() and a ||
 * operator that record who called them, usable by anyone.  Its own calls
 * find them; the functions, running as the owner, must not.
 */
START_TEST(test_search_path_cannot_trick_definer)
{
    pv_t  p;
    long  id;
    char  sql[256], *v;

    pv_setup(&p);
    rt_execf(p.super, "CREATE SCHEMA trap AUTHORIZATION \"%s\"", p.app);
    rt_exec(p.as_app,
            "CREATE TABLE trap.seen (who text, what text);"
            "CREATE FUNCTION trap.now() RETURNS timestamptz LANGUAGE sql VOLATILE"
            "  AS $$ INSERT INTO trap.seen VALUES (current_user, 'now'); SELECT pg_catalog.now() $$;"
            "CREATE FUNCTION trap.isfinite(timestamptz) RETURNS boolean LANGUAGE sql VOLATILE"
            "  AS $$ INSERT INTO trap.seen VALUES (current_user, 'isfinite'); SELECT pg_catalog.isfinite($1) $$;"
            "CREATE FUNCTION trap.pg_notify(text, text) RETURNS void LANGUAGE sql VOLATILE"
            "  AS $$ INSERT INTO trap.seen VALUES (current_user, 'pg_notify') $$;"
            "CREATE FUNCTION trap.cat(text, text) RETURNS text LANGUAGE sql VOLATILE"
            "  AS $$ INSERT INTO trap.seen VALUES (current_user, '||'); SELECT pg_catalog.textcat($1, $2) $$;"
            "CREATE OPERATOR trap.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = trap.cat);"
            "GRANT USAGE ON SCHEMA trap TO PUBLIC;"
            "GRANT INSERT ON trap.seen TO PUBLIC;"
            "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA trap TO PUBLIC;"
            "CREATE TEMP TABLE jobs (id bigint);"
            "SET search_path = trap, pg_catalog");
    /* the trap works: the application's own unqualified call lands in it */
    rt_exec(p.as_app, "SELECT now(), 'a' || 'b'");
    ck_assert_int_eq(rt_query_long(p.as_app, "SELECT count(*) FROM trap.seen"), 2);

    /* a live node with an idle worker, so that the wake-up reaches pg_notify */
    rt_exec(p.as_owner, "INSERT INTO rhino.nodes (name, pid, lease_until, idle)"
                        " VALUES ('n', 1, now() + interval '1 hour', true)");
    id = rt_query_long(p.as_app, "SELECT rhino.enqueue('ok')");
    rt_query_long(p.as_app, "SELECT id FROM rhino.enqueue_job('ok', unique_key => 'u', unique_for => '1 minute')");
    snprintf(sql, sizeof(sql), "SELECT rhino.cancel(%ld) || rhino.cancel(%ld)", id, id);
    v = rt_query1(p.as_app, sql);
    free(v);
    v = rt_query1(p.as_app, "SELECT rhino.schedule('s', '@daily', 'ok')");
    free(v);
    v = rt_query1(p.as_app, "SELECT rhino.unschedule('s')::text");
    free(v);
    /* only the application's own two calls above, and the || between the two cancels */
    v = rt_query1(p.super, "SELECT string_agg(who || ':' || what, ' ') FROM trap.seen");
    ck_assert_msg(rt_query_longf(p.super, "SELECT count(*) FROM trap.seen WHERE who = '%s'", p.owner) == 0,
                  "a rhino function ran the caller's objects as the owner: %s", v ? v : "");
    ck_assert_msg(rt_query_longf(p.super, "SELECT count(*) FROM trap.seen WHERE who = '%s'", p.app) == 3, "%s", v ? v : "");
    free(v);
    /* and the job went in and out as it should: the temporary "jobs" table stayed empty */
    ck_assert_int_eq(rt_query_long(p.as_app, "SELECT count(*) FROM pg_temp.jobs"), 0);
    ck_assert_int_eq(rt_query_longf(p.as_owner, "SELECT count(*) FROM rhino.jobs_done WHERE id = %ld"
                                        " AND state = 'cancelled'", id), 1);
    pv_teardown(&p);
}
END_TEST

/* ---- a bulk producer, monitoring ----------------------------------------- */

START_TEST(test_bulk_producer_copies_only)
{
    pv_t           p;
    PGconn        *conn;
    rhino_job_spec jobs[3] = { { "ok", "{\"i\": 1}", { 0 } }, { "ok", "{\"i\": 2}", { 0 } },
                               { "ok", NULL, { .queue = "mail", .priority = 3 } } };
    int64_t        ids[3];
    bool           existing[3];
    rhino_error    e;
    char          *out = NULL, *err = NULL;
    int            rc;

    pv_setup(&p);
    rc = rt_ctl(p.bulk_dsn, "{\"n\": 1}\n{\"n\": 2}\n", &out, &err, "enqueue", "--bulk", "ok", NULL);
    ck_assert_msg(rc == 0, "rhinoctl enqueue --bulk as the bulk producer exited %d: %s", rc, err);
    free(out);
    free(err);
    rc = rt_ctl(p.bulk_dsn, "{\"n\": 3}\n", &out, &err, "enqueue", "--bulk", "ok", "--run-at", "+1 hour",
                "--priority", "2", NULL);
    ck_assert_msg(rc == 0, "rhinoctl enqueue --bulk --run-at exited %d: %s", rc, err);
    free(out);
    free(err);
    ck_assert_int_eq(rt_query_long(p.as_owner, "SELECT count(*) FROM rhino.jobs"), 3);

    conn = rt_connect(p.bulk_dsn);
    ck_assert_msg(rhino_enqueue_many(conn, jobs, 3, ids, existing, &e) == 0, "%s", e.message);
    ck_assert_int_eq(rt_query_longf(p.as_owner, "SELECT count(*) FROM rhino.jobs WHERE id IN (%lld, %lld, %lld)",
                            (long long) ids[0], (long long) ids[1], (long long) ids[2]), 3);
    jobs[0].opts.unique_key = "k";          /* keyed: through rhino.enqueue_job, which it may not call */
    ck_assert_int_eq(rhino_enqueue_many(conn, jobs, 1, ids, existing, &e), -1);
    ck_assert_str_eq(e.sqlstate, "42501");
    denied(conn, "SELECT count(*) FROM rhino.jobs");
    denied(conn, "UPDATE rhino.jobs SET priority = 0");
    denied(conn, "DELETE FROM rhino.jobs");
    denied(conn, "INSERT INTO rhino.jobs (kind, unique_key) VALUES ('ok', 'k')");
    denied(conn, "INSERT INTO rhino.jobs (kind, attempt) VALUES ('ok', 3)");
    denied(conn, "SELECT payload FROM rhino.all_jobs");
    PQfinish(conn);
    ck_assert_int_eq(rt_query_long(p.as_owner, "SELECT count(*) FROM rhino.jobs"), 6);
    pv_teardown(&p);
}
END_TEST

START_TEST(test_monitoring_reads_only)
{
    pv_t    p;
    PGconn *conn;
    char   *out = NULL, *err = NULL, idtext[32];
    long    id;
    int     rc;

    pv_setup(&p);
    id = rt_query_long(p.as_app, "SELECT rhino.enqueue('ok', '{\"secret\": 1}')");
    snprintf(idtext, sizeof(idtext), "%ld", id);

    /* everything: the commands that read, payloads included */
    rc = rt_ctl(p.monitor_dsn, NULL, &out, &err, "stats", NULL);
    ck_assert_msg(rc == 0 && strstr(out, "available") != NULL, "stats: %d %s%s", rc, out, err);
    free(out);
    free(err);
    rc = rt_ctl(p.monitor_dsn, NULL, &out, &err, "list", "--payload", NULL);
    ck_assert_msg(rc == 0 && strstr(out, "secret") != NULL, "list: %d %s%s", rc, out, err);
    free(out);
    free(err);
    rc = rt_ctl(p.monitor_dsn, NULL, &out, &err, "show", idtext, NULL);
    ck_assert_msg(rc == 0 && strstr(out, "secret") != NULL, "show: %d %s%s", rc, out, err);
    free(out);
    free(err);
    rc = rt_ctl(p.monitor_dsn, NULL, &out, &err, "top", "--once", NULL);
    ck_assert_msg(rc == 0, "top: %d %s%s", rc, out, err);
    free(out);
    free(err);
    rc = rt_ctl(p.monitor_dsn, NULL, &out, &err, "schedules", NULL);
    ck_assert_msg(rc == 0, "schedules: %d %s%s", rc, out, err);
    free(out);
    free(err);
    conn = rt_connect(p.monitor_dsn);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.all_jobs"), 1);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.dead_letters"), 0);
    ck_assert_int_eq(rt_query_long(conn, "SELECT count(*) FROM rhino.jobs_done_by_id(ARRAY[1::bigint])"), 0);
    denied(conn, "UPDATE rhino.jobs SET priority = 1");
    denied(conn, "DELETE FROM rhino.jobs");
    denied(conn, "SELECT rhino.cancel(1)");
    denied(conn, "SELECT rhino.enqueue('ok')");
    PQfinish(conn);
    /* and rhinoctl's admin commands are refused, naming the role and the README */
    rc = rt_ctl(p.monitor_dsn, NULL, &out, &err, "cancel", idtext, NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "permission denied") != NULL && strstr(err, p.monitor) != NULL
                  && strstr(err, "Roles and privileges") != NULL, "%s", err);
    free(out);
    free(err);

    /* stats and top only, without payloads */
    rc = rt_ctl(p.stats_dsn, NULL, &out, &err, "stats", NULL);
    ck_assert_msg(rc == 0 && strstr(out, "available") != NULL, "stats: %d %s%s", rc, out, err);
    free(out);
    free(err);
    rc = rt_ctl(p.stats_dsn, NULL, &out, &err, "top", "--once", NULL);
    ck_assert_msg(rc == 0, "top: %d %s%s", rc, out, err);
    free(out);
    free(err);
    rc = rt_ctl(p.stats_dsn, NULL, &out, &err, "list", NULL);
    ck_assert_int_eq(rc, 1);
    free(out);
    free(err);
    conn = rt_connect(p.stats_dsn);
    denied(conn, "SELECT payload FROM rhino.jobs");
    denied(conn, "SELECT last_error FROM rhino.jobs");
    denied(conn, "SELECT payload FROM rhino.jobs_done_rows");
    denied(conn, "SELECT payload FROM rhino.jobs_done_batches");
    denied(conn, "SELECT * FROM rhino.all_jobs");
    PQfinish(conn);
    pv_teardown(&p);
}
END_TEST

/* ---- the daemon ---------------------------------------------------------- */

/*
 * rhino as role: the application's jobs (plain, keyed, throttled, one
 * scheduled a second ahead) complete; the sessions are that role's.
 */
static void
daemon_runs_app_jobs(pv_t *p, const char *role, const char *role_dsn)
{
    rt_daemon_t d;

    rt_daemon_setup_dsn(&d, strdup(role_dsn), NULL);
    rt_exec(p->as_app, "SELECT rhino.enqueue('ok', jsonb_build_object('i', g)) FROM generate_series(1, 200) g");
    rt_exec(p->as_app, "SELECT rhino.enqueue('ok', unique_key => 'once')");
    rt_exec(p->as_app, "SELECT rhino.enqueue('ok', unique_key => 'win', unique_for => '1 hour')");
    rt_exec(p->as_app, "SELECT rhino.enqueue('ok', run_at => now() + interval '1 second')");
    rt_daemon_start(&d);
    rt_daemon_wait(&d, "SELECT count(*) = 203 FROM rhino.jobs_done WHERE state = 'completed'", 60);
    ck_assert_int_eq(rt_query_longf(p->super, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                      " AND application_name LIKE 'rhino %%' AND usename = '%s'", role), 1 + 2 + 1);
    ck_assert_int_eq(rt_query_longf(p->super, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                      " AND application_name LIKE 'rhino %%' AND usename <> '%s'", role), 0);
    /* and a job enqueued while it runs, as new work arrives */
    rt_exec(p->as_app, "SELECT rhino.enqueue('ok')");
    rt_daemon_wait(&d, "SELECT count(*) = 204 FROM rhino.jobs_done WHERE state = 'completed'", 30);
    rt_daemon_stop(&d);
    ck_assert_int_eq(rt_query_long(d.conn, "SELECT count(*) FROM rhino.jobs"), 0);
    rt_daemon_teardown(&d);
}

START_TEST(test_daemon_as_owner)
{
    pv_t p;

    pv_setup(&p);
    daemon_runs_app_jobs(&p, p.owner, p.owner_dsn);
    pv_teardown(&p);
}
END_TEST

/* A daemon role apart from the owner, with the README's grants: it works, without the reaper's VACUUM. */
START_TEST(test_daemon_role_apart)
{
    pv_t p;

    pv_setup(&p);
    daemon_runs_app_jobs(&p, p.daemon, p.daemon_dsn);
    pv_teardown(&p);
}
END_TEST

static Suite *
privileges_suite(void)
{
    Suite *s = suite_create("privileges");
    TCase *tc;

    tc = tcase_create("owner");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_owner_is_no_superuser);
    tcase_add_test(tc, test_errors_name_role_and_readme);
    suite_add_tcase(s, tc);

    tc = tcase_create("application");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_app_uses_the_functions);
    tcase_add_test(tc, test_app_cannot_touch_tables);
    tcase_add_test(tc, test_functions_revoked_and_pinned);
    tcase_add_test(tc, test_search_path_cannot_trick_definer);
    suite_add_tcase(s, tc);

    tc = tcase_create("bulk_and_monitoring");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bulk_producer_copies_only);
    tcase_add_test(tc, test_monitoring_reads_only);
    suite_add_tcase(s, tc);

    tc = tcase_create("daemon");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_daemon_as_owner);
    tcase_add_test(tc, test_daemon_role_apart);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(privileges_suite());
    int      failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
