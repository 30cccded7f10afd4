/*
 * rh_schedule.c - periodic jobs: the [schedule NAME] sections of the config,
 * and firing the schedules that are due (called by the reaper every pass).
 *
 * Exactly once.  A schedule row carries fired_until: every fire time up to it
 * has been dealt with.  To fire, a reaper reads the due rows, computes in C
 * which fire times to enqueue (rh_schedule_plan, by the missed policy), and
 * sends ONE statement that (1) advances fired_until only if it still holds
 * the value the reaper read (compare-and-set: of two hosts that computed the
 * same fires, the second matches nothing), (2) inserts one rhino.schedule_fires
 * row per fire time, ON CONFLICT DO NOTHING on its primary key (schedule,
 * fire_time), and (3) inserts a job only for the fire rows that were new.
 * The compare-and-set keeps the hosts from acting on a stale view (say, one
 * host enqueueing a fire time that another's 'latest' policy skipped); the
 * primary key makes a second job for one fire time impossible whatever
 * happens to fired_until (an operator moving it back, a restore).
 *
 * Time is the database's clock, read in the same statement as the due rows,
 * so hosts whose clocks disagree still agree on what is due.
 */
#include "config.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iniparser/iniparser.h>

#include "rh_config.h"
#include "rh_db.h"
#include "rh_log.h"
#include "rh_schedule.h"
#include "rh_sql.h"

/* Due schedules handled per pass; the rest wait for the next pass (a fraction of a second). */
#define RH_SCHEDULE_BATCH "200"

/* ---- config ------------------------------------------------------------------ */

int
rh_schedule_parse_missed(const char *s)
{
    static const char *const names[] = { "latest", "all", "none" };

    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void
rh_schedule_defs_free(rh_schedule_def_t *defs, int n)
{
    if (defs == NULL)
        return;
    for (int i = 0; i < n; i++) {
        free(defs[i].name);
        free(defs[i].cron);
        free(defs[i].kind);
        free(defs[i].payload);
        free(defs[i].queue);
        free(defs[i].missed);
    }
    free(defs);
}

/* A small recursive-descent check of RFC 8259, so that a bad payload fails at load time. */
typedef struct {
    const char *p;
    int         depth;
} json_t;

static void
j_ws(json_t *j)
{
    while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
        j->p++;
}

static int j_value(json_t *j);

static int
j_string(json_t *j)
{
    if (*j->p != '"')
        return 0;
    for (j->p++; *j->p != '"'; j->p++) {
        if ((unsigned char) *j->p < 0x20)
            return 0;           /* control characters (and the end of the text) must be escaped */
        if (*j->p == '\\') {
            j->p++;
            if (*j->p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char) j->p[i]))
                        return 0;
                j->p += 4;
            } else if (strchr("\"\\/bfnrt", *j->p) == NULL || *j->p == '\0') {
                return 0;
            }
        }
    }
    j->p++;
    return 1;
}

static int
j_number(json_t *j)
{
    const char *s = j->p;

    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if (*s >= '1' && *s <= '9')
        while (isdigit((unsigned char) *s))
            s++;
    else
        return 0;
    if (*s == '.') {
        if (!isdigit((unsigned char) *++s))
            return 0;
        while (isdigit((unsigned char) *s))
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!isdigit((unsigned char) *s))
            return 0;
        while (isdigit((unsigned char) *s))
            s++;
    }
    j->p = s;
    return 1;
}

static int
j_container(json_t *j, char close)
{
    if (++j->depth > 64)
        return 0;
    j->p++;
    j_ws(j);
    if (*j->p == close) {
        j->p++;
        j->depth--;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            if (!j_string(j))
                return 0;
            j_ws(j);
            if (*j->p++ != ':')
                return 0;
            j_ws(j);
        }
        if (!j_value(j))
            return 0;
        j_ws(j);
        if (*j->p == ',') {
            j->p++;
            j_ws(j);
            continue;
        }
        if (*j->p++ != close)
            return 0;
        j->depth--;
        return 1;
    }
}

static int
j_value(json_t *j)
{
    switch (*j->p) {
    case '{':
        return j_container(j, '}');
    case '[':
        return j_container(j, ']');
    case '"':
        return j_string(j);
    case 't':
        return strncmp(j->p, "true", 4) == 0 ? (j->p += 4, 1) : 0;
    case 'f':
        return strncmp(j->p, "false", 5) == 0 ? (j->p += 5, 1) : 0;
    case 'n':
        return strncmp(j->p, "null", 4) == 0 ? (j->p += 4, 1) : 0;
    default:
        return j_number(j);
    }
}

int
rh_schedule_json_valid(const char *s)
{
    json_t j = { s, 0 };

    j_ws(&j);
    if (!j_value(&j))
        return 0;
    j_ws(&j);
    return *j.p == '\0';
}

static char *
trim_dup(const char *s)
{
    const char *e;
    char       *out;

    while (isspace((unsigned char) *s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char) e[-1]))
        e--;
    out = malloc((size_t) (e - s) + 1);
    if (out != NULL) {
        memcpy(out, s, (size_t) (e - s));
        out[e - s] = '\0';
    }
    return out;
}

static int
parse_whole(const char *s, long min, long max, int *out)
{
    char *end;
    long  v;

    while (isspace((unsigned char) *s))
        s++;
    if (*s == '\0')
        return -1;
    v = strtol(s, &end, 10);
    while (isspace((unsigned char) *end))
        end++;
    if (*end != '\0' || v < min || v > max)
        return -1;
    *out = (int) v;
    return 0;
}

/* One key of a schedule section into def; -1 with err (without the section prefix). */
static int
section_key(rh_schedule_def_t *def, const char *key, const char *val, char *err, size_t errlen)
{
    char **slot = NULL;

    if (strcmp(key, "cron") == 0) {
        rh_cron_t c;

        if (rh_cron_parse(val, &c, err, errlen) < 0)
            return -1;
        slot = &def->cron;
    } else if (strcmp(key, "kind") == 0) {
        slot = &def->kind;
    } else if (strcmp(key, "queue") == 0) {
        slot = &def->queue;
    } else if (strcmp(key, "payload") == 0) {
        if (!rh_schedule_json_valid(val)) {
            snprintf(err, errlen, "\"%s\" is not valid JSON (write it in single quotes: payload = '{\"a\": 1}')",
                     val);
            return -1;
        }
        slot = &def->payload;
    } else if (strcmp(key, "missed") == 0) {
        char *t = trim_dup(val);

        if (t == NULL || rh_schedule_parse_missed(t) < 0) {
            snprintf(err, errlen, "\"%s\" is not one of latest, all, none", val);
            free(t);
            return -1;
        }
        free(def->missed);
        def->missed = t;
        return 0;
    } else if (strcmp(key, "priority") == 0) {
        if (parse_whole(val, -32768, 32767, &def->priority) < 0) {
            snprintf(err, errlen, "\"%s\" is not a whole number from -32768 to 32767", val);
            return -1;
        }
        return 0;
    } else if (strcmp(key, "max_attempts") == 0) {
        if (parse_whole(val, 1, 1000000, &def->max_attempts) < 0) {
            snprintf(err, errlen, "\"%s\" is not a whole number from 1 to 1000000", val);
            return -1;
        }
        return 0;
    } else if (strcmp(key, "timeout") == 0) {
        if (rh_parse_seconds(val, 0.001, 86400.0 * 7, &def->timeout) < 0) {
            snprintf(err, errlen, "\"%s\" is not a duration from 1ms to 7d (such as 30, 30s, "
                     "500ms, 5m, 2h)", val);
            return -1;
        }
        return 0;
    } else {
        snprintf(err, errlen, "unknown key (known: cron, kind, payload, queue, priority, max_attempts, "
                 "timeout, missed)");
        return -1;
    }
    free(*slot);
    *slot = trim_dup(val);
    if (*slot == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if ((slot == &def->kind || slot == &def->queue) && (**slot == '\0' || strlen(*slot) > 255)) {
        snprintf(err, errlen, "must be 1 to 255 bytes long");
        return -1;
    }
    return 0;
}

int
rh_schedule_config_section(struct _dictionary_ *d, const char *sec, struct rh_config *cfg, char *err, size_t errlen)
{
    rh_schedule_def_t *defs, *def;
    const char        *name;
    const char       **keys = NULL;
    char               msg[512];
    int                nk;

    if (strncmp(sec, "schedule", 8) != 0 || (sec[8] != '\0' && !isspace((unsigned char) sec[8])))
        return 0;
    name = sec + 8;
    while (isspace((unsigned char) *name))
        name++;
    if (*name == '\0') {
        snprintf(err, errlen, "[%s]: a schedule section needs a name: [schedule NAME]", sec);
        return -1;
    }
    /* iniparser splits "section:key" at the ':' and lowercases both; keep names plain */
    for (const char *p = name; *p; p++)
        if (!(islower((unsigned char) *p) || isdigit((unsigned char) *p) || strchr("_-.", *p))) {
            snprintf(err, errlen, "[%s]: a schedule name may only have letters, digits, '_', '-' and '.' "
                     "(names are lowercased)", sec);
            return -1;
        }
    if (strlen(name) > 255) {
        snprintf(err, errlen, "[%s]: the schedule name is longer than 255 bytes", sec);
        return -1;
    }
    for (int i = 0; i < cfg->nschedules; i++)
        if (strcmp(cfg->schedules[i].name, name) == 0) {
            snprintf(err, errlen, "[%s]: schedule \"%s\" is defined twice", sec, name);
            return -1;
        }

    defs = realloc(cfg->schedules, sizeof(*defs) * (size_t) (cfg->nschedules + 1));
    if (defs == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cfg->schedules = defs;
    def = &defs[cfg->nschedules++];
    memset(def, 0, sizeof(*def));
    def->name = strdup(name);
    def->payload = strdup("{}");
    def->queue = strdup("default");
    def->missed = strdup("latest");
    def->max_attempts = 25;
    if (def->name == NULL || def->payload == NULL || def->queue == NULL || def->missed == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    nk = iniparser_getsecnkeys(d, sec);
    if (nk > 0) {
        keys = calloc((size_t) nk, sizeof(char *));
        if (keys == NULL || iniparser_getseckeys(d, sec, keys) == NULL) {
            free(keys);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    for (int i = 0; i < nk; i++) {
        const char *key = strrchr(keys[i], ':') + 1;    /* "schedule nightly:cron" */

        if (section_key(def, key, iniparser_getstring(d, keys[i], ""), msg, sizeof(msg)) < 0) {
            snprintf(err, errlen, "[%s] %s: %s", sec, key, msg);
            free(keys);
            return -1;
        }
    }
    free(keys);
    if (def->cron == NULL || def->kind == NULL) {
        snprintf(err, errlen, "[%s]: %s is missing; a schedule needs at least cron and kind", sec,
                 def->cron == NULL ? "cron" : "kind");
        return -1;
    }
    return 1;
}

/* ---- the plan ------------------------------------------------------------------ */

int
rh_schedule_plan(const rh_cron_t *c, rh_missed_t missed, int64_t fired_until, int64_t now,
                 rh_schedule_plan_t *plan)
{
    int64_t newest, t;

    memset(plan, 0, offsetof(rh_schedule_plan_t, fires));
    plan->fired_until = fired_until;
    if (rh_cron_next(c, now > fired_until ? now : fired_until, &plan->next_fire) < 0)
        return -1;
    if (rh_cron_prev(c, now, &newest) < 0 || newest <= fired_until)
        return 0;               /* nothing due */
    plan->fired_until = newest;
    if (rh_cron_next(c, fired_until, &plan->first_due) < 0)
        return -1;

    switch (missed) {
    case RH_MISSED_LATEST:
        plan->fires[plan->nfires++] = newest;
        break;
    case RH_MISSED_NONE:
        if (now - newest <= RH_SCHEDULE_GRACE)
            plan->fires[plan->nfires++] = newest;
        break;
    case RH_MISSED_ALL:
        /* newest first, backwards, then reversed: the cap keeps the newest */
        t = newest;
        for (;;) {
            plan->fires[plan->nfires++] = t;
            if (rh_cron_prev(c, t - 1, &t) < 0 || t <= fired_until)
                break;
            if (plan->nfires == RH_SCHEDULE_MAX_CATCHUP) {
                plan->capped = 1;
                break;
            }
        }
        for (int i = 0, k = plan->nfires - 1; i < k; i++, k--) {
            int64_t x = plan->fires[i];
            plan->fires[i] = plan->fires[k];
            plan->fires[k] = x;
        }
        return 0;
    }
    return 0;
}

/* ---- the database -------------------------------------------------------------- */

int
rh_schedule_sync(PGconn *conn, const struct rh_config *cfg)
{
    PGresult *res;
    char     *names, **v;
    int       changed = 0;

    for (int i = 0; i < cfg->nschedules; i++) {
        const rh_schedule_def_t *s = &cfg->schedules[i];
        char        prio[16], att[16], tmo[32], what[300];
        const char *p[10] = { s->name, s->cron, s->kind, s->payload, s->queue, prio, att,
                              s->timeout > 0 ? tmo : NULL, s->missed, "config" };

        snprintf(prio, sizeof(prio), "%d", s->priority);
        snprintf(att, sizeof(att), "%d", s->max_attempts);
        snprintf(tmo, sizeof(tmo), "%.3f", s->timeout);
        snprintf(what, sizeof(what), "[schedule %s]", s->name);
        res = rh_db_exec(conn, RH_STMT_SCHEDULE_UPSERT, p, what);
        if (res == NULL) {
            if (PQstatus(conn) != CONNECTION_OK)
                return -1;
            continue;           /* refused (logged); the others still apply */
        }
        if (strcmp(PQgetvalue(res, 0, 0), "unchanged") != 0) {
            changed++;
            rh_log_info("schedule %s %s from the config: \"%s\", kind %s, queue %s, missed %s", s->name,
                        PQgetvalue(res, 0, 0), s->cron, s->kind, s->queue, s->missed);
        }
        PQclear(res);
    }

    /* the names as a text[] literal, for the schedules of other (older) configs */
    if ((v = malloc(sizeof(*v) * (size_t) (cfg->nschedules + 1))) == NULL)
        return -1;
    for (int i = 0; i < cfg->nschedules; i++)
        v[i] = cfg->schedules[i].name;
    names = rh_db_text_array(v, cfg->nschedules);
    free(v);
    if (names == NULL)
        return -1;
    {
        const char *p[1] = { names };

        res = rh_db_exec(conn, RH_STMT_SCHEDULE_ORPHANS, p, NULL);
    }
    free(names);
    if (res == NULL)
        return PQstatus(conn) == CONNECTION_OK ? 0 : -1;
    for (int r = 0; r < PQntuples(res); r++)
        rh_log_warning("schedule %s came from a [schedule %s] section that this configuration does not have; "
                       "it keeps firing until \"rhinoctl unschedule %s\" removes it",
                       PQgetvalue(res, r, 0), PQgetvalue(res, r, 0), PQgetvalue(res, r, 0));
    PQclear(res);
    if (cfg->nschedules > 0)
        rh_log_debug("%d config schedule(s) applied, %d changed", cfg->nschedules, changed);
    return 0;
}

/* "{1,2,3}" of the plan's fire times; malloc'd. */
static char *
fires_literal(const rh_schedule_plan_t *plan)
{
    size_t cap = 3 + (size_t) plan->nfires * 21, len;
    char  *s = malloc(cap);

    if (s == NULL)
        return NULL;
    len = (size_t) snprintf(s, cap, "{");
    for (int i = 0; i < plan->nfires; i++)
        len += (size_t) snprintf(s + len, cap - len, "%s%" PRId64, i ? "," : "", plan->fires[i]);
    snprintf(s + len, cap - len, "}");
    return s;
}

/*
 * A due schedule this rhino cannot fire: rhino.cron_check() let it into the
 * table, so this rhino's parser disagrees with the schema's (an older rhino
 * on a newer schema), or someone moved fired_until to the far past or
 * future.  Record why, say so once, and park the row until rhino.schedule()
 * changes it.  0, or -1 on a database error.
 */
static int
park(PGconn *conn, const char *name, const char *cron, const char *why)
{
    const char *p[3] = { name, cron, why };
    PGresult   *res = rh_db_exec(conn, RH_STMT_SCHEDULE_INVALID, p, name);

    if (res == NULL)
        return -1;
    if (PQntuples(res) > 0)
        rh_log_warning("schedule %s is not fired: %s", name, why);
    PQclear(res);
    return 0;
}

/* One due schedule; jobs enqueued, or -1 on a database error. */
static int
fire_one(PGconn *conn, const char *name, const char *cron, const char *missed_s, int64_t fired_until,
         int64_t now)
{
    rh_cron_t           c;
    rh_schedule_plan_t *plan;
    char                err[512], old_s[24], new_s[24], next_s[24], *fires;
    int                 missed = rh_schedule_parse_missed(missed_s), n;
    PGresult           *res;

    if (missed < 0) {
        snprintf(err, sizeof(err), "unknown missed policy \"%s\"", missed_s);
        return park(conn, name, cron, err);
    }
    if (rh_cron_parse(cron, &c, err, sizeof(err)) < 0)
        return park(conn, name, cron, err);
    plan = malloc(sizeof(*plan));
    if (plan == NULL)
        return -1;
    if (rh_schedule_plan(&c, (rh_missed_t) missed, fired_until, now, plan) < 0) {
        free(plan);
        snprintf(err, sizeof(err), "no fire time within %d years of its fired_until (or past the year 9999)",
                 RH_CRON_HORIZON_YEARS);
        return park(conn, name, cron, err);
    }
    fires = fires_literal(plan);
    if (fires == NULL) {
        free(plan);
        return -1;
    }
    snprintf(old_s, sizeof(old_s), "%" PRId64, fired_until);
    snprintf(new_s, sizeof(new_s), "%" PRId64, plan->fired_until);
    snprintf(next_s, sizeof(next_s), "%" PRId64, plan->next_fire);
    {
        const char *p[6] = { name, cron, old_s, new_s, next_s, fires };

        res = rh_db_exec(conn, RH_STMT_SCHEDULE_FIRE, p, name);
    }
    free(fires);
    if (res == NULL) {
        free(plan);
        return -1;
    }
    n = atoi(PQgetvalue(res, 0, 1));
    if (atoi(PQgetvalue(res, 0, 0)) == 0) {
        rh_log_debug("schedule %s: another host fired it first, or it changed meanwhile", name);
    } else if (plan->first_due != 0 && (plan->first_due != plan->fired_until || plan->nfires == 0)) {
        /* more than one fire time was due, or the one due was late: fires were missed */
        char first[32], last[32];

        rh_cron_format(plan->first_due, first, sizeof(first));
        rh_cron_format(plan->fired_until, last, sizeof(last));
        if (plan->capped)
            rh_log_warning("schedule %s: the fire times from %s to %s were due at once (missed while no "
                           "rhino ran); missed = all enqueued the newest %d of them and dropped the older ones",
                           name, first, last, RH_SCHEDULE_MAX_CATCHUP);
        else if (plan->first_due == plan->fired_until)
            rh_log_info("schedule %s: the fire time %s was seen %" PRId64 " s late; missed = %s: %d job(s) "
                        "enqueued", name, first, now - plan->first_due, missed_s, n);
        else
            rh_log_info("schedule %s: the fire times from %s to %s were due at once (missed while no rhino ran, "
                        "or late); missed = %s: %d job(s) enqueued", name, first, last, missed_s, n);
    } else if (n > 0) {
        char at[32];

        rh_cron_format(plan->fires[plan->nfires - 1], at, sizeof(at));
        rh_log_debug("schedule %s: fire time %s enqueued as job %s", name, at, PQgetvalue(res, 0, 2));
    }
    PQclear(res);
    free(plan);
    return n;
}

int
rh_schedule_tick(PGconn *conn, const char *now)
{
    const char *p[2] = { now, RH_SCHEDULE_BATCH };
    PGresult   *res = rh_db_exec(conn, RH_STMT_SCHEDULES_DUE, p, NULL);
    int         total = 0, rc = 0;

    if (res == NULL)
        return -1;
    for (int r = 0; r < PQntuples(res); r++) {
        int n = fire_one(conn, PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), PQgetvalue(res, r, 2),
                         strtoll(PQgetvalue(res, r, 3), NULL, 10), strtoll(PQgetvalue(res, r, 4), NULL, 10));

        if (n < 0) {
            rc = -1;
            if (PQstatus(conn) != CONNECTION_OK)
                break;
            continue;
        }
        total += n;
    }
    PQclear(res);
    return rc < 0 ? -1 : total;
}

int
rh_schedule_prune(PGconn *conn, double keep)
{
    char        k[32];
    const char *p[1] = { k };
    PGresult   *res;
    int         n;

    snprintf(k, sizeof(k), "%.3f", keep);
    res = rh_db_exec(conn, RH_STMT_SCHEDULE_PRUNE, p, NULL);
    if (res == NULL)
        return -1;
    n = atoi(PQcmdTuples(res));
    PQclear(res);
    return n;
}
