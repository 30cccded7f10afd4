/*
 * rh_config.c - the configuration file.
 *
 * Every key Rhino understands is one row of rh_config_keys[] below (the
 * PgBouncer way): its section, name, type, default, bounds and where it lands
 * in rh_config_t.  iniparser only reads the file; this table decides what is
 * valid.  Unknown sections and keys are errors, not warnings: a typo in
 * "bach_size" silently running with the default is how outages start.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <iniparser/iniparser.h>

#include "rh_config.h"
#include "rh_db.h"
#include "rh_log.h"
#include "rh_metrics.h"
#include "rh_schedule.h"

typedef enum {
    RH_CF_INT,
    RH_CF_SECONDS,
    RH_CF_STRING,
    RH_CF_LIST,
    RH_CF_LOGLEVEL,
    RH_CF_LOGFORMAT,
    RH_CF_BOOL
} rh_cf_type_t;

typedef struct {
    const char   *section;
    const char   *key;
    rh_cf_type_t  type;
    size_t        offset;
    const char   *def;
    double        min, max;
    size_t        count_offset;     /* RH_CF_LIST: where the item count goes */
} rh_cf_key_t;

#define OFF(f) offsetof(rh_config_t, f)

static const rh_cf_key_t rh_config_keys[] = {
    { "database",  "dsn",               RH_CF_STRING,   OFF(dsn),                   "",        0, 0, 0 },
    { "database",  "listen",            RH_CF_BOOL,     OFF(listen),                "on",      0, 0, 0 },
    { "database",  "listen_dsn",        RH_CF_STRING,   OFF(listen_dsn),            "",        0, 0, 0 },
    { "database",  "prepare",           RH_CF_BOOL,     OFF(prepare),               "on",      0, 0, 0 },
    { "worker",    "processes",         RH_CF_INT,      OFF(processes),             "2",       1, RH_MAX_PROCESSES, 0 },
    { "worker",    "batch_size",        RH_CF_INT,      OFF(batch_size),            "1000",    1, RH_MAX_BATCH, 0 },
    { "worker",    "queues",            RH_CF_LIST,     OFF(queues),                "default", 0, 0, OFF(nqueues) },
    { "worker",    "poll_interval",     RH_CF_SECONDS,  OFF(poll_interval),         "0.1",     0.001, 60, 0 },
    { "worker",    "job_timeout",       RH_CF_SECONDS,  OFF(job_timeout),           "600",     0, 86400.0 * 7, 0 },
    { "worker",    "cancel_grace",      RH_CF_SECONDS,  OFF(cancel_grace),          "10",      0, 86400, 0 },
    { "worker",    "max_crashes",       RH_CF_INT,      OFF(max_crashes),           "3",       1, 1000, 0 },
    { "worker",    "early_start",       RH_CF_BOOL,     OFF(early_start),           "on",      0, 0, 0 },
    { "worker",    "rescan_interval",   RH_CF_SECONDS,  OFF(rescan_interval),       "0.25",    0, 3600, 0 },
    { "handlers",  "path",              RH_CF_LIST,     OFF(handler_paths),         "",        0, 0, OFF(nhandler_paths) },
    { "handlers",  "load_timeout",      RH_CF_SECONDS,  OFF(handler_load_timeout),  "10",      0.1, 3600, 0 },
    { "retry",     "base_delay",        RH_CF_SECONDS,  OFF(retry_base_delay),      "1",       0, 86400 * 365, 0 },
    { "retry",     "max_delay",         RH_CF_SECONDS,  OFF(retry_max_delay),       "3600",    0, 86400 * 365, 0 },
    { "reaper",    "interval",          RH_CF_SECONDS,  OFF(reaper_interval),       "0.5",     0.01, 60, 0 },
    { "reaper",    "lease",             RH_CF_SECONDS,  OFF(lease),                 "30",      1, 3600, 0 },
    { "reaper",    "vacuum_interval",   RH_CF_SECONDS,  OFF(vacuum_interval),       "5",       0, 86400, 0 },
    { "master",    "name",              RH_CF_STRING,   OFF(node_name),             "",        0, 0, 0 },
    { "master",    "shutdown_timeout",  RH_CF_SECONDS,  OFF(shutdown_timeout),      "30",      0, 86400, 0 },
    { "master",    "fast_shutdown_timeout", RH_CF_SECONDS, OFF(fast_shutdown_timeout), "2",   0, 3600, 0 },
    { "retention", "completed",         RH_CF_SECONDS,  OFF(retention_completed),   "86400",   0, 86400.0 * 3650, 0 },
    { "retention", "discarded",         RH_CF_SECONDS,  OFF(retention_discarded),   "604800",  0, 86400.0 * 3650, 0 },
    { "log",       "level",             RH_CF_LOGLEVEL, OFF(log_level),             "info",    0, 0, 0 },
    { "log",       "format",            RH_CF_LOGFORMAT, OFF(log_format),           "text",    0, 0, 0 },
    { "log",       "syslog",            RH_CF_BOOL,     OFF(log_syslog),            "off",     0, 0, 0 },
    { "metrics",   "listen",            RH_CF_STRING,   OFF(metrics_listen),        "",        0, 0, 0 },
    { "metrics",   "depth_limit",       RH_CF_INT,      OFF(metrics_depth_limit),   "1000000", 0, 2000000000, 0 },
};

#define NKEYS (sizeof(rh_config_keys) / sizeof(rh_config_keys[0]))

int
rh_config_key(size_t i, const char **section, const char **key, const char **def)
{
    if (i >= NKEYS)
        return -1;
    *section = rh_config_keys[i].section;
    *key = rh_config_keys[i].key;
    *def = rh_config_keys[i].def;
    return 0;
}

static void
cf_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *
trim(char *s)
{
    char *e;

    while (isspace((unsigned char) *s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char) e[-1]))
        *--e = '\0';
    return s;
}

void
rh_free_list(char **list)
{
    if (list == NULL)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

int
rh_split_list(const char *s, char ***out, int *n)
{
    char  *copy = strdup(s), *save = NULL, *tok, *item;
    char **list;
    int    cap = 1, cnt = 0;

    if (copy == NULL)
        return -1;
    for (const char *p = s; *p; p++)
        if (*p == ',')
            cap++;
    list = calloc((size_t) cap + 1, sizeof(char *));
    if (list == NULL) {
        free(copy);
        return -1;
    }
    *out = list;
    *n = 0;
    if (*trim(copy) == '\0') {
        free(copy);
        return 0;
    }
    /* strsep, not strtok: "a,,b" must be an error, not "a,b" */
    item = copy;
    while ((tok = strsep(&item, ",")) != NULL) {
        char *t = trim(tok);
        if (*t == '\0') {
            free(copy);
            return -1;
        }
        list[cnt] = strdup(t);
        if (list[cnt] == NULL) {
            free(copy);
            return -1;
        }
        cnt++;
    }
    (void) save;
    free(copy);
    *n = cnt;
    return 0;
}

/*
 * One parser for every duration Rhino reads, in the config file and on
 * rhinoctl's command line, so that "500ms" means the same everywhere.  The
 * number is decimal (no hex: "0x1d" must not read as 29 seconds, nor "inf"
 * or "nan" as anything); blanks around it and before the unit are allowed.
 */
static const struct {
    const char *unit;
    double      secs;
} rh_duration_units[] = {
    { "", 1 }, { "s", 1 }, { "ms", 0.001 }, { "m", 60 }, { "min", 60 }, { "h", 3600 }, { "d", 86400 },
};

int
rh_parse_seconds(const char *s, double min, double max, double *out)
{
    const char *p;
    char       *end, unit[8];
    double      v, secs = NAN;
    size_t      n;

    while (isspace((unsigned char) *s))
        s++;
    p = s + (*s == '+' || *s == '-');
    if (!isdigit((unsigned char) *p) && *p != '.')
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || memchr(s, 'x', (size_t) (end - s)) || memchr(s, 'X', (size_t) (end - s)))
        return -1;
    while (isspace((unsigned char) *end))
        end++;
    n = strlen(end);
    while (n > 0 && isspace((unsigned char) end[n - 1]))
        n--;
    if (n >= sizeof(unit))
        return -1;
    memcpy(unit, end, n);
    unit[n] = '\0';
    for (size_t u = 0; u < sizeof(rh_duration_units) / sizeof(rh_duration_units[0]); u++)
        if (strcmp(unit, rh_duration_units[u].unit) == 0)
            secs = v * rh_duration_units[u].secs;
    /* NaN fails both comparisons: an unknown unit, or an infinite number */
    if (!isfinite(secs) || !(secs >= min && secs <= max))
        return -1;
    *out = secs;
    return 0;
}

static int
parse_int(const char *s, long min, long max, int *out)
{
    char *end;
    long  v;

    while (isspace((unsigned char) *s))
        s++;
    if (*s == '\0')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    while (isspace((unsigned char) *end))
        end++;
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int) v;
    return 0;
}

/* Apply one value to its slot; on error fills err (without the file prefix). */
static int
cf_apply(const rh_cf_key_t *k, const char *val, rh_config_t *cfg, char *err, size_t errlen)
{
    char *base = (char *) cfg;

    switch (k->type) {
    case RH_CF_INT:
        if (parse_int(val, (long) k->min, (long) k->max, (int *) (base + k->offset)) < 0) {
            cf_err(err, errlen, "[%s] %s: \"%s\" is not a whole number from %.0f to %.0f",
                   k->section, k->key, val, k->min, k->max);
            return -1;
        }
        return 0;
    case RH_CF_SECONDS:
        if (rh_parse_seconds(val, k->min, k->max, (double *) (base + k->offset)) < 0) {
            cf_err(err, errlen, "[%s] %s: \"%s\" is not a duration from %g to %g seconds "
                   "(a number of seconds, or with a unit: 500ms, 30s, 5m, 2h, 1d)", k->section, k->key, val,
                   k->min, k->max);
            return -1;
        }
        return 0;
    case RH_CF_STRING: {
        char **slot = (char **) (base + k->offset);
        free(*slot);
        *slot = strdup(val);
        return *slot ? 0 : -1;
    }
    case RH_CF_LIST: {
        char ***slot = (char ***) (base + k->offset);
        int    *cnt = (int *) (base + k->count_offset);
        rh_free_list(*slot);
        *slot = NULL;
        if (rh_split_list(val, slot, cnt) < 0) {
            cf_err(err, errlen, "[%s] %s: \"%s\" has an empty item; write a comma-separated list",
                   k->section, k->key, val);
            return -1;
        }
        return 0;
    }
    case RH_CF_LOGLEVEL: {
        int lvl = rh_log_parse_level(val);
        if (lvl < 0) {
            cf_err(err, errlen, "[%s] %s: \"%s\" is not one of error, warning, info, debug",
                   k->section, k->key, val);
            return -1;
        }
        *(int *) (base + k->offset) = lvl;
        return 0;
    }
    case RH_CF_LOGFORMAT: {
        int fmt = rh_log_parse_format(val);
        if (fmt < 0) {
            cf_err(err, errlen, "[%s] %s: \"%s\" is not one of text, json", k->section, k->key, val);
            return -1;
        }
        *(int *) (base + k->offset) = fmt;
        return 0;
    }
    case RH_CF_BOOL: {
        static const char *const yes[] = { "on", "true", "yes", "1" }, *const no[] = { "off", "false", "no", "0" };
        char  buf[16];
        char *t;

        snprintf(buf, sizeof(buf), "%s", val);
        t = trim(buf);
        for (size_t i = 0; i < 4; i++) {
            if (strcasecmp(t, yes[i]) == 0 || strcasecmp(t, no[i]) == 0) {
                *(int *) (base + k->offset) = strcasecmp(t, yes[i]) == 0;
                return 0;
            }
        }
        cf_err(err, errlen, "[%s] %s: \"%s\" is not on or off", k->section, k->key, val);
        return -1;
    }
    }
    return -1;
}

static const rh_cf_key_t *
cf_find(const char *section, const char *key)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(rh_config_keys[i].section, section) == 0 &&
            (key == NULL || strcmp(rh_config_keys[i].key, key) == 0))
            return &rh_config_keys[i];
    return NULL;
}

void
rh_config_defaults(rh_config_t *cfg)
{
    char scratch[256];

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NKEYS; i++)
        if (cf_apply(&rh_config_keys[i], rh_config_keys[i].def, cfg, scratch, sizeof(scratch)) < 0)
            abort();            /* a bad default is a programming error */
    {
        const char *env = getenv("RHINO_DSN");
        if (env != NULL && *env != '\0') {
            free(cfg->dsn);
            cfg->dsn = strdup(env);
        }
    }
}

/*
 * iniparser reports syntax errors through this callback; keep the first
 * one.  Its messages quote the offending line ("-> %s"), and a line that is
 * not key = value may well be a secret pasted on its own (a DSN with its
 * password), which must not reach the log: so the message is rebuilt from
 * the line number alone, and the text of the line is never formatted.
 * iniparser's formats: "syntax error in %s (%d):\n-> %s", "input line too
 * long in %s (%d)", "cannot open %s", "memory allocation failure".
 */
static char *ini_err_buf;
static size_t ini_err_len;

static int
ini_error_cb(const char *fmt, ...)
{
    va_list ap;
    int     line = 0;

    if (ini_err_buf == NULL || ini_err_buf[0] != '\0')
        return 0;
    va_start(ap, fmt);
    if (strstr(fmt, "syntax error") || strstr(fmt, "too long")) {
        (void) va_arg(ap, const char *);        /* the file: the caller names it */
        line = va_arg(ap, int);
    }
    va_end(ap);
    if (strstr(fmt, "syntax error"))
        snprintf(ini_err_buf, ini_err_len, "line %d is not a [section], a key = value, a comment or blank "
                 "(its text is not shown: it may hold a secret)", line);
    else if (strstr(fmt, "too long"))
        snprintf(ini_err_buf, ini_err_len, "line %d is too long", line);
    else if (strstr(fmt, "memory"))
        snprintf(ini_err_buf, ini_err_len, "out of memory");
    else
        snprintf(ini_err_buf, ini_err_len, "cannot be read");
    return 0;
}

/*
 * Relative paths in the file are relative to the file's own directory, not
 * to the working directory: under systemd that is /, so "path = handlers"
 * that "rhino -t" accepted next to the file would not be found by the
 * service.  The directory is made absolute (the working directory when the
 * file was named relatively), so that a later SIGHUP or a worker reads the
 * same files; symbolic links are not resolved.  Only [handlers] path names
 * files; the DSN's (sslrootcert, passfile) are libpq's to read.
 */
static int
cf_resolve_paths(const char *file, char **paths, int npaths, char *err, size_t errlen)
{
    const char *slash = strrchr(file, '/');
    char        cwd[4096], *dir = NULL;
    int         rc = -1;

    for (int i = 0; i < npaths; i++) {
        const char *rel = paths[i];
        char       *abs;

        if (rel[0] == '/')
            continue;
        if (dir == NULL) {
            int n;

            if (slash == file)
                n = asprintf(&dir, "/");
            else if (file[0] == '/')
                n = asprintf(&dir, "%.*s", (int) (slash - file), file);
            else if (getcwd(cwd, sizeof(cwd)) == NULL) {
                cf_err(err, errlen, "%s: [handlers] path: \"%s\" is relative to the file's directory, but the "
                       "working directory cannot be read: %s", file, rel, strerror(errno));
                goto out;
            } else if (slash == NULL || (slash == file + 1 && file[0] == '.'))
                n = asprintf(&dir, "%s", cwd);       /* "rhino.ini", "./rhino.ini" */
            else
                n = asprintf(&dir, "%s/%.*s", strcmp(cwd, "/") == 0 ? "" : cwd, (int) (slash - file), file);
            if (n < 0) {
                dir = NULL;
                cf_err(err, errlen, "%s: out of memory", file);
                goto out;
            }
        }
        while (rel[0] == '.' && rel[1] == '/')
            for (rel += 2; *rel == '/'; rel++)
                ;
        if (asprintf(&abs, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", rel) < 0) {
            cf_err(err, errlen, "%s: out of memory", file);
            goto out;
        }
        free(paths[i]);
        paths[i] = abs;
    }
    rc = 0;
out:
    free(dir);
    return rc;
}

int
rh_config_load(const char *file, rh_config_t *cfg, char *err, size_t errlen)
{
    dictionary *d;
    char        msg[512], inimsg[512] = "";
    FILE       *f;
    int         nsec;

    rh_config_defaults(cfg);
    cfg->path = strdup(file);

    /* iniparser says only "cannot open"; say why */
    f = fopen(file, "r");
    if (f == NULL) {
        cf_err(err, errlen, "%s: cannot read the configuration file: %s", file, strerror(errno));
        return -1;
    }
    fclose(f);

    ini_err_buf = inimsg;
    ini_err_len = sizeof(inimsg);
    iniparser_set_error_callback(ini_error_cb);
    d = iniparser_load(file);
    iniparser_set_error_callback(NULL);
    ini_err_buf = NULL;
    if (d == NULL) {
        cf_err(err, errlen, "%s: not a valid INI file: %s", file, inimsg[0] ? inimsg : "syntax error");
        return -1;
    }

    /*
     * Keys above the first [section] are stored as ":key", in a section ""
     * that iniparser never lists: without this they were silently ignored
     * (a "processes = 8" at the top of the file changed nothing).
     */
    for (ssize_t i = 0; i < d->size; i++)
        if (d->key[i] != NULL && d->key[i][0] == ':') {
            cf_err(err, errlen, "%s: key '%s' comes before any [section]: move it under its section "
                   "(see rhino.ini(5))", file, d->key[i] + 1);
            iniparser_freedict(d);
            return -1;
        }
    nsec = iniparser_getnsec(d);
    for (int s = 0; s < nsec; s++) {
        const char  *sec = iniparser_getsecname(d, s);
        int          nk = iniparser_getsecnkeys(d, sec);
        const char **keys;

        /* [schedule NAME]: one section per schedule, not a row of the key table */
        switch (rh_schedule_config_section(d, sec, cfg, msg, sizeof(msg))) {
        case 1:
            continue;
        case -1:
            cf_err(err, errlen, "%s: %s", file, msg);
            iniparser_freedict(d);
            return -1;
        }
        if (cf_find(sec, NULL) == NULL) {
            cf_err(err, errlen, "%s: unknown section [%s] (known: database, worker, handlers, retry, "
                   "reaper, master, retention, log, metrics, schedule NAME)", file, sec);
            iniparser_freedict(d);
            return -1;
        }
        if (nk <= 0)
            continue;
        keys = calloc((size_t) nk, sizeof(char *));
        if (keys == NULL || iniparser_getseckeys(d, sec, keys) == NULL) {
            free(keys);
            iniparser_freedict(d);
            cf_err(err, errlen, "%s: out of memory", file);
            return -1;
        }
        for (int i = 0; i < nk; i++) {
            const char        *key = strchr(keys[i], ':') + 1;    /* "section:key" */
            const rh_cf_key_t *k = cf_find(sec, key);
            const char        *val;

            if (k == NULL) {
                cf_err(err, errlen, "%s: [%s] %s: unknown key", file, sec, key);
                free(keys);
                iniparser_freedict(d);
                return -1;
            }
            val = iniparser_getstring(d, keys[i], "");
            if (k->offset == OFF(dsn) && getenv("RHINO_DSN") && *getenv("RHINO_DSN"))
                continue;   /* the environment wins over the file */
            if (cf_apply(k, val, cfg, msg, sizeof(msg)) < 0) {
                cf_err(err, errlen, "%s: %s", file, msg);
                free(keys);
                iniparser_freedict(d);
                return -1;
            }
        }
        free(keys);
    }
    iniparser_freedict(d);

    /* cross-key rules */
    if (rh_db_check_dsn(cfg->dsn, msg, sizeof(msg)) < 0) {
        /* at start and at SIGHUP: a DSN libpq cannot parse is refused before any process uses it */
        cf_err(err, errlen, "%s: [database] dsn (or RHINO_DSN): %s", file, msg);
        return -1;
    }
    if (cfg->listen_dsn && cfg->listen_dsn[0] && rh_db_check_dsn(cfg->listen_dsn, msg, sizeof(msg)) < 0) {
        cf_err(err, errlen, "%s: [database] listen_dsn: %s", file, msg);
        return -1;
    }
    if (cfg->nqueues == 0) {
        cf_err(err, errlen, "%s: [worker] queues: empty; name at least one queue (for example: default)", file);
        return -1;
    }
    if (cfg->nhandler_paths == 0) {
        cf_err(err, errlen, "%s: [handlers] path: not set; list the handler .so files or directories "
               "(comma-separated)", file);
        return -1;
    }
    if (cf_resolve_paths(file, cfg->handler_paths, cfg->nhandler_paths, err, errlen) < 0)
        return -1;
    if (cfg->retry_max_delay < cfg->retry_base_delay) {
        cf_err(err, errlen, "%s: [retry] max_delay (%g) is below base_delay (%g)", file,
               cfg->retry_max_delay, cfg->retry_base_delay);
        return -1;
    }
    if (cfg->reaper_interval * 3 > cfg->lease) {
        cf_err(err, errlen, "%s: [reaper] lease (%g s) must be at least three reaper intervals (%g s)",
               file, cfg->lease, cfg->reaper_interval);
        return -1;
    }
    for (int i = 0; i < cfg->nqueues; i++)
        if (strlen(cfg->queues[i]) > 255) {
            cf_err(err, errlen, "%s: [worker] queues: a queue name is longer than 255 bytes", file);
            return -1;
        }
    if (cfg->metrics_listen[0] != '\0') {
#ifdef HAVE_LIBMICROHTTPD
        struct sockaddr_storage sa;
        socklen_t               salen;

        if (rh_metrics_parse_listen(cfg->metrics_listen, &sa, &salen, msg, sizeof(msg)) < 0) {
            cf_err(err, errlen, "%s: [metrics] listen: %s", file, msg);
            return -1;
        }
#else
        cf_err(err, errlen, "%s: [metrics] listen: rhino was built without libmicrohttpd, so it cannot "
               "serve metrics (install libmicrohttpd-dev and rebuild, or remove the key)", file);
        return -1;
#endif
    }
    return 0;
}

void
rh_config_free(rh_config_t *cfg)
{
    free(cfg->path);
    free(cfg->dsn);
    free(cfg->listen_dsn);
    rh_free_list(cfg->queues);
    rh_free_list(cfg->handler_paths);
    free(cfg->node_name);
    free(cfg->metrics_listen);
    rh_schedule_defs_free(cfg->schedules, cfg->nschedules);
    memset(cfg, 0, sizeof(*cfg));
}
