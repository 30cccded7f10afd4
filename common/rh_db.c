/* rh_db.c - connecting to PostgreSQL and checking the schema version. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rh_db.h"
#include "rh_log.h"
#include "rh_sql.h"

static void
conn_params(const char *dsn, const char *role, const char **keys, const char **vals, char *app, size_t applen)
{
    snprintf(app, applen, "rhino %s", role);
    keys[0] = "dbname";                    vals[0] = dsn ? dsn : "";
    keys[1] = "fallback_application_name"; vals[1] = app;
    keys[2] = NULL;                        vals[2] = NULL;
}

int
rh_db_check_dsn(const char *dsn, char *err, size_t errlen)
{
    PQconninfoOption *opts;
    char             *msg = NULL;
    size_t            o = 0;
    int               quoted = 0;

    if (dsn == NULL || *dsn == '\0')
        return 0;
    opts = PQconninfoParse(dsn, &msg);
    if (opts != NULL) {
        PQconninfoFree(opts);
        return 0;
    }
    if (errlen == 0) {
        PQfreemem(msg);
        return -1;
    }
    o = (size_t) snprintf(err, errlen, "the DSN is not a valid connection string: ");
    for (const char *p = msg ? msg : "out of memory"; *p && *p != '\n' && o + 4 < errlen; p++) {
        if (*p == '"') {
            if (!quoted) {
                memcpy(err + o, "\"...", 4);
                o += 4;
            } else {
                err[o++] = '"';
            }
            quoted = !quoted;
        } else if (!quoted) {
            err[o++] = *p;
        }
    }
    err[o < errlen ? o : errlen - 1] = '\0';
    PQfreemem(msg);
    return -1;
}

/*
 * The server's notices (a handler's RAISE NOTICE, a VACUUM that skipped a
 * locked table) go into our log as structured lines; libpq's default
 * would write them to stderr as raw text in the middle of the JSON.  A
 * WARNING is logged as a warning, except lock_not_available (55P03), which
 * is what a SKIP_LOCKED VACUUM says when it skips, as the reaper asked;
 * everything else at debug.
 */
static void
notice_receiver(void *arg, const PGresult *res)
{
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

    (void) arg;
    if (msg == NULL)
        msg = "";
    if (sev != NULL && strcmp(sev, "WARNING") == 0 && (code == NULL || strcmp(code, "55P03") != 0))
        rh_log_warning("database warning (SQLSTATE %s): %s", code ? code : "?", msg);
    else
        rh_log_debug("database %s (SQLSTATE %s): %s", sev ? sev : "notice", code ? code : "?", msg);
}

PGconn *
rh_db_connect(const char *dsn, const char *role, char *err, size_t errlen)
{
    const char *keys[3], *vals[3];
    char        app[64];
    PGconn     *conn;

    if (rh_db_check_dsn(dsn, err, errlen) < 0)
        return NULL;
    conn_params(dsn, role, keys, vals, app, sizeof(app));
    /* expand_dbname = 1: a "postgres://" URI or "k=v" string in dbname is parsed */
    conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL) {
        snprintf(err, errlen, "out of memory while connecting");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to the database: %s", rh_db_error(conn, NULL));
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeReceiver(conn, notice_receiver, NULL);
    return conn;
}

PGconn *
rh_db_connect_start(const char *dsn, const char *role)
{
    const char *keys[3], *vals[3];
    char        app[64];
    PGconn     *conn;

    conn_params(dsn, role, keys, vals, app, sizeof(app));
    conn = PQconnectStartParams(keys, vals, 1);
    if (conn != NULL)
        PQsetNoticeReceiver(conn, notice_receiver, NULL);
    return conn;
}

/*
 * Copy the first line of m into out (outlen bytes), with what follows
 * "password=" (sslpassword= too) up to the end of its value (a blank, a
 * quote, '&' or the end; a quoted value to its closing quote) shown as ***.
 * libpq never prints a password it parsed as one, but a DSN written from a
 * template with an empty value ("host=db port= password=s3cret", from
 * port=$PGPORT) hands the next pair to the option before it, and libpq then
 * quotes it whole in its complaint: invalid integer value
 * "password=s3cret" for connection option "port".  With the value hidden
 * the message still names the option that is wrong.
 */
static void
copy_hiding_passwords(char *out, size_t outlen, const char *m)
{
    static const char key[] = "password=";
    const size_t      klen = sizeof(key) - 1;
    size_t            o = 0;

    while (*m && *m != '\n' && o + 1 < outlen) {
        if (strncasecmp(m, key, klen) == 0 && o + klen + 4 < outlen) {
            const char *e = m + klen;

            memcpy(out + o, m, klen);
            o += klen;
            if (*e == '\'' || *e == '"') {
                char q = *e++;

                while (*e && *e != q)
                    e++;
                if (*e)
                    e++;
            } else {
                while (*e && *e != ' ' && *e != '\t' && *e != '"' && *e != '\'' && *e != '&' && *e != '\n')
                    e++;
            }
            if (e > m + klen) {
                memcpy(out + o, "***", 3);
                o += 3;
            }
            m = e;
            continue;
        }
        out[o++] = *m++;
    }
    out[o] = '\0';
}

/*
 * The general hint for a missing privilege.  The error alone ("permission
 * denied for table schema_migrations") says what was refused but not which
 * role the server saw, nor where the grants are written down.
 */
#define RH_DB_HINT_PRIVILEGE \
    "lacks a privilege this needs; README, \"Roles and privileges\", lists the grants of the schema's" \
    " owner, a daemon role, an application and monitoring"

/* Said when rhino (or rhinoctl) cannot even read the schema version. */
#define RH_DB_HINT_SCHEMA \
    "has no rights on Rhino's schema: run rhino and rhinoctl as the role that ran \"rhinoctl migrate\"" \
    " (it owns the schema), or grant this role those its use needs: README, \"Roles and privileges\""

const char *
rh_db_error_hint(PGconn *conn, const PGresult *res, const char *hint)
{
    static char buf[2048];
    const char *m = res ? PQresultErrorMessage(res) : (conn ? PQerrorMessage(conn) : "");
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *user = conn ? PQuser(conn) : NULL;
    size_t      len;

    if (m == NULL || *m == '\0')
        m = conn ? PQerrorMessage(conn) : "unknown error";
    if (m == NULL || *m == '\0')
        m = "unknown error (connection lost?)";
    /* libpq: "FATAL:  database \"x\" does not exist\n"; keep the first line */
    copy_hiding_passwords(buf, sizeof(buf), m);
    /* 42501 insufficient_privilege: "permission denied for ...", "must be owner of ..." */
    if (hint != NULL && state != NULL && strcmp(state, "42501") == 0) {
        len = strlen(buf);
        snprintf(buf + len, sizeof(buf) - len, " (role \"%s\" %s)", user ? user : "?", hint);
    }
    return buf;
}

const char *
rh_db_error(PGconn *conn, const PGresult *res)
{
    return rh_db_error_hint(conn, res, RH_DB_HINT_PRIVILEGE);
}

int
rh_db_check_schema(PGconn *conn, char *err, size_t errlen)
{
    PGresult *res;
    int       v;

    res = PQexec(conn, "SELECT to_regclass('rhino.schema_migrations') IS NOT NULL");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "cannot read the schema version: %s", rh_db_error_hint(conn, res, RH_DB_HINT_SCHEMA));
        PQclear(res);
        return -1;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        PQclear(res);
        snprintf(err, errlen, "the database has no Rhino schema: run \"rhinoctl migrate\" first");
        return -1;
    }
    PQclear(res);
    res = PQexec(conn, rh_sql(RH_STMT_SCHEMA_VERSION)->sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "cannot read the schema version: %s", rh_db_error_hint(conn, res, RH_DB_HINT_SCHEMA));
        PQclear(res);
        return -1;
    }
    v = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (v < RH_SCHEMA_VERSION) {
        snprintf(err, errlen, "the Rhino schema is at version %d but this rhino needs %d: "
                 "run \"rhinoctl migrate\"", v, RH_SCHEMA_VERSION);
        return -1;
    }
    if (v > RH_SCHEMA_VERSION) {
        snprintf(err, errlen, "the Rhino schema is at version %d, newer than this rhino knows (%d): "
                 "upgrade rhino", v, RH_SCHEMA_VERSION);
        return -1;
    }
    return 0;
}

/* res if statement st succeeded; otherwise NULL after logging "[what: ]name failed: reason". */
static PGresult *
db_result(PGconn *conn, const rh_stmt_t *st, PGresult *res, const char *what)
{
    ExecStatusType s = PQresultStatus(res);

    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        rh_log_error("%s%s%s failed: %s", what ? what : "", what ? ": " : "", st->name, rh_db_error(conn, res));
        PQclear(res);
        return NULL;
    }
    return res;
}

PGresult *
rh_db_exec(PGconn *conn, rh_stmt_id_t id, const char *const *params, const char *what)
{
    const rh_stmt_t *st = rh_sql(id);

    return db_result(conn, st, PQexecParams(conn, st->sql, st->nparams, NULL, params, NULL, NULL, 0), what);
}

PGresult *
rh_db_exec_nojit(PGconn *conn, rh_stmt_id_t id, const char *what)
{
    static const char prefix[] = RH_DB_NOJIT;
    const rh_stmt_t *st = rh_sql(id);
    size_t           len = sizeof(prefix) + strlen(st->sql);
    char            *sql = malloc(len);
    PGresult        *res;

    if (sql == NULL || st->nparams != 0) {
        rh_log_error("%s%s%s: %s", what ? what : "", what ? ": " : "", st->name,
                     sql == NULL ? "out of memory" : "has parameters (internal error)");
        free(sql);
        return NULL;
    }
    snprintf(sql, len, "%s%s", prefix, st->sql);
    res = PQexec(conn, sql);        /* the last statement's result: st's */
    free(sql);
    return db_result(conn, st, res, what);
}

size_t
rh_db_array_quote(char *dst, const char *v)
{
    size_t len = 0;

    dst[len++] = '"';
    for (const char *c = v; *c; c++) {
        if (*c == '"' || *c == '\\')
            dst[len++] = '\\';
        dst[len++] = *c;
    }
    dst[len++] = '"';
    return len;
}

char *
rh_db_text_array(char *const *items, int n)
{
    size_t cap = 3, len = 0;
    char  *out;

    for (int i = 0; i < n; i++)
        cap += RH_DB_QUOTED_MAX(strlen(items[i])) + 1;     /* and a comma */
    if ((out = malloc(cap)) == NULL)
        return NULL;
    out[len++] = '{';
    for (int i = 0; i < n; i++) {
        if (i > 0)
            out[len++] = ',';
        len += rh_db_array_quote(out + len, items[i]);
    }
    out[len++] = '}';
    out[len] = '\0';
    return out;
}
