/*
 * check_config.c - unit tests of common/rh_config.c: what a configuration
 * file may say, and that every mistake is refused with a message naming the
 * file and the key, so that an operator can fix it without reading code.
 */
#include "config.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "rh_config.h"
#include "rh_log.h"
#include "rh_schedule.h"
#include "rh_testlib.h"

#define MIN_OK "[handlers]\npath = /opt/rhino/handlers\n"

static const char full_ini[] =
    "; every key, none at its default\n"
    "[database]\n"
    "dsn = host=/run/pg dbname=jobs\n"
    "\n"
    "[worker]\n"
    "processes = 8\n"
    "batch_size = 250\n"
    "queues = default, mail ,reports\n"
    "poll_interval = 0.25\n"
    "\n"
    "[handlers]\n"
    "path = /opt/rhino/a.so, /opt/rhino/more\n"
    "\n"
    "[retry]\n"
    "base_delay = 2\n"
    "max_delay = 600\n"
    "\n"
    "[reaper]\n"
    "interval = 1.5\n"
    "lease = 45\n"
    "\n"
    "[master]\n"
    "name = node-a\n"
    "shutdown_timeout = 60\n"
    "fast_shutdown_timeout = 5\n"
    "\n"
    "[retention]\n"
    "completed = 3600\n"
    "discarded = 0\n"
    "\n"
    "[log]\n"
    "level = debug\n";

/* The file is in a fresh directory, so a test's path never matches another's. */
static int
load_text(const char *ini, rh_config_t *cfg, char *err, size_t errlen, char **path)
{
    *path = rt_write_file("rhino.ini", ini);
    err[0] = '\0';
    return rh_config_load(*path, cfg, err, errlen);
}

/*
 * Load INI, expect it refused, and check the message names the file and holds
 * each of the NULL-terminated substrings that follow.
 */
static void
expect_error(const char *ini, ...)
{
    rh_config_t cfg;
    char        err[1024];
    char       *path;
    const char *want;
    va_list     ap;
    int         rc;

    rc = load_text(ini, &cfg, err, sizeof(err), &path);
    ck_assert_msg(rc == -1, "accepted, but should not be:\n%s", ini);
    ck_assert_msg(strstr(err, path) != NULL, "message does not name the file %s: %s", path, err);
    va_start(ap, ini);
    while ((want = va_arg(ap, const char *)) != NULL)
        ck_assert_msg(strstr(err, want) != NULL, "message lacks \"%s\": %s", want, err);
    va_end(ap);
    rh_config_free(&cfg);
    free(path);
}

static void
expect_ok(const char *ini, rh_config_t *cfg)
{
    char  err[1024];
    char *path;

    if (load_text(ini, cfg, err, sizeof(err), &path) != 0)
        ck_abort_msg("refused: %s\nfile:\n%s", err, ini);
    free(path);
}

/* The caller's environment must not leak into the expectations below. */
static void
setup(void)
{
    unsetenv("RHINO_DSN");
}

START_TEST(test_full_file)
{
    rh_config_t cfg;
    char        err[1024];
    char       *path;

    ck_assert_int_eq(load_text(full_ini, &cfg, err, sizeof(err), &path), 0);
    ck_assert_str_eq(cfg.path, path);
    ck_assert_str_eq(cfg.dsn, "host=/run/pg dbname=jobs");
    ck_assert_int_eq(cfg.processes, 8);
    ck_assert_int_eq(cfg.batch_size, 250);
    ck_assert_int_eq(cfg.nqueues, 3);
    ck_assert_str_eq(cfg.queues[0], "default");
    ck_assert_str_eq(cfg.queues[1], "mail");
    ck_assert_str_eq(cfg.queues[2], "reports");
    ck_assert_ptr_null(cfg.queues[3]);
    ck_assert_double_eq(cfg.poll_interval, 0.25);
    ck_assert_int_eq(cfg.nhandler_paths, 2);
    ck_assert_str_eq(cfg.handler_paths[0], "/opt/rhino/a.so");
    ck_assert_str_eq(cfg.handler_paths[1], "/opt/rhino/more");
    ck_assert_ptr_null(cfg.handler_paths[2]);
    ck_assert_double_eq(cfg.retry_base_delay, 2);
    ck_assert_double_eq(cfg.retry_max_delay, 600);
    ck_assert_double_eq(cfg.reaper_interval, 1.5);
    ck_assert_double_eq(cfg.lease, 45);
    ck_assert_str_eq(cfg.node_name, "node-a");
    ck_assert_double_eq(cfg.shutdown_timeout, 60);
    ck_assert_double_eq(cfg.fast_shutdown_timeout, 5);
    ck_assert_double_eq(cfg.retention_completed, 3600);
    ck_assert_double_eq(cfg.retention_discarded, 0);
    ck_assert_int_eq(cfg.log_level, RH_LOG_DEBUG);
    rh_config_free(&cfg);
    ck_assert_ptr_null(cfg.path);
    free(path);
}
END_TEST

static void
assert_defaults(const rh_config_t *cfg)
{
    ck_assert_str_eq(cfg->dsn, "");
    ck_assert_int_eq(cfg->processes, 2);
    ck_assert_int_eq(cfg->batch_size, 1000);
    ck_assert_int_eq(cfg->nqueues, 1);
    ck_assert_str_eq(cfg->queues[0], "default");
    ck_assert_ptr_null(cfg->queues[1]);
    ck_assert_double_eq(cfg->poll_interval, 0.1);
    ck_assert_double_eq(cfg->retry_base_delay, 1);
    ck_assert_double_eq(cfg->retry_max_delay, 3600);
    ck_assert_double_eq(cfg->reaper_interval, 0.5);
    ck_assert_double_eq(cfg->lease, 30);
    ck_assert_str_eq(cfg->node_name, "");
    ck_assert_double_eq(cfg->shutdown_timeout, 30);
    ck_assert_double_eq(cfg->fast_shutdown_timeout, 2);
    ck_assert_double_eq(cfg->retention_completed, 86400);
    ck_assert_double_eq(cfg->retention_discarded, 604800);
    ck_assert_int_eq(cfg->log_level, RH_LOG_INFO);
}

START_TEST(test_defaults_when_absent)
{
    rh_config_t cfg;

    expect_ok(MIN_OK, &cfg);
    assert_defaults(&cfg);
    ck_assert_int_eq(cfg.nhandler_paths, 1);
    ck_assert_str_eq(cfg.handler_paths[0], "/opt/rhino/handlers");
    rh_config_free(&cfg);

    /* an empty section is the same as no section */
    expect_ok("[worker]\n[retry]\n" MIN_OK, &cfg);
    assert_defaults(&cfg);
    rh_config_free(&cfg);
}
END_TEST

START_TEST(test_defaults_function)
{
    rh_config_t cfg;

    rh_config_defaults(&cfg);
    assert_defaults(&cfg);
    ck_assert_int_eq(cfg.nhandler_paths, 0);
    rh_config_free(&cfg);
}
END_TEST

START_TEST(test_unknown_section)
{
    expect_error(MIN_OK "[wroker]\nprocesses = 4\n", "unknown section", "[wroker]", NULL);
}
END_TEST

START_TEST(test_unknown_key)
{
    expect_error(MIN_OK "[worker]\nbach_size = 10\n", "[worker]", "bach_size", "unknown key", NULL);
    /* a real key in the wrong section is unknown too */
    expect_error(MIN_OK "[retry]\nprocesses = 4\n", "[retry]", "processes", "unknown key", NULL);
}
END_TEST

START_TEST(test_processes_bounds)
{
    static const char *const bad[] = { "0", "999", "257", "abc", "-1", "4x", "2.5", "" };
    rh_config_t cfg;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char ini[256];

        snprintf(ini, sizeof(ini), MIN_OK "[worker]\nprocesses = %s\n", bad[i]);
        expect_error(ini, "[worker] processes", NULL);
    }
    expect_error(MIN_OK "[worker]\nprocesses = abc\n", "\"abc\"", NULL);
    expect_ok(MIN_OK "[worker]\nprocesses = 1\n", &cfg);
    ck_assert_int_eq(cfg.processes, 1);
    rh_config_free(&cfg);
    expect_ok(MIN_OK "[worker]\nprocesses = 256\n", &cfg);
    ck_assert_int_eq(cfg.processes, RH_MAX_PROCESSES);
    rh_config_free(&cfg);
}
END_TEST

START_TEST(test_batch_size_bounds)
{
    rh_config_t cfg;

    expect_error(MIN_OK "[worker]\nbatch_size = 0\n", "[worker] batch_size", "\"0\"", NULL);
    expect_error(MIN_OK "[worker]\nbatch_size = 1001\n", "[worker] batch_size", "\"1001\"", NULL);
    expect_ok(MIN_OK "[worker]\nbatch_size = 1\n", &cfg);
    ck_assert_int_eq(cfg.batch_size, 1);
    rh_config_free(&cfg);
    expect_ok(MIN_OK "[worker]\nbatch_size = 1000\n", &cfg);
    ck_assert_int_eq(cfg.batch_size, RH_MAX_BATCH);
    rh_config_free(&cfg);
}
END_TEST

START_TEST(test_bad_seconds)
{
    static const char *const bad[] = { "-1", "abc", "1e999", "nan", "inf", "1,5", "0x", "-5ms", "nans",
                                       "infs", "-inf", "1e999ms", "5x", "5 sec", "ms", "5 m s", "0x1d",
                                       "1dd", "5S" };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char ini[256];

        snprintf(ini, sizeof(ini), MIN_OK "[retry]\nbase_delay = %s\n", bad[i]);
        expect_error(ini, "[retry] base_delay", bad[i], NULL);
        snprintf(ini, sizeof(ini), MIN_OK "[master]\nshutdown_timeout = %s\n", bad[i]);
        expect_error(ini, "[master] shutdown_timeout", NULL);
    }
    /* below the key's own floor */
    expect_error(MIN_OK "[worker]\npoll_interval = 0\n", "[worker] poll_interval", NULL);
    expect_error(MIN_OK "[reaper]\nlease = 0.5\n", "[reaper] lease", NULL);
    /* the floor and the ceiling hold whatever the unit */
    expect_error(MIN_OK "[worker]\npoll_interval = 0.5ms\n", "[worker] poll_interval", "0.5ms",
                 "from 0.001 to 60 seconds", "500ms", NULL);
    expect_error(MIN_OK "[worker]\npoll_interval = 2m\n", "[worker] poll_interval", NULL);
    expect_error(MIN_OK "[retry]\nmax_delay = 366d\n", "[retry] max_delay", NULL);
    /* [schedule NAME] timeout shares the parser */
    expect_error(MIN_OK "[schedule s]\ncron = * * * * *\nkind = k\ntimeout = -1s\n", "timeout", "-1s", NULL);
}
END_TEST

/* Durations take the units rhinoctl queue --aging takes: ms, s, m, min, h, d. */
START_TEST(test_duration_units)
{
    rh_config_t cfg;

    expect_ok(MIN_OK "[worker]\npoll_interval = 100ms\njob_timeout = 2h\ncancel_grace = 30s\n"
              "rescan_interval = 0\n"
              "[reaper]\ninterval = 250 ms\nlease = 1.5min\n"
              "[retry]\nbase_delay = 1.5\nmax_delay = 5m\n"
              "[retention]\ncompleted = 1d\ndiscarded = 0.5d\n"
              "[schedule s]\ncron = * * * * *\nkind = k\ntimeout = 90s\n", &cfg);
    ck_assert_double_eq_tol(cfg.poll_interval, 0.1, 1e-12);
    ck_assert_double_eq(cfg.job_timeout, 7200);
    ck_assert_double_eq(cfg.cancel_grace, 30);
    ck_assert_double_eq(cfg.rescan_interval, 0);
    ck_assert_double_eq(cfg.reaper_interval, 0.25);
    ck_assert_double_eq(cfg.lease, 90);
    ck_assert_double_eq(cfg.retry_base_delay, 1.5);     /* a plain number is seconds */
    ck_assert_double_eq(cfg.retry_max_delay, 300);
    ck_assert_double_eq(cfg.retention_completed, 86400);
    ck_assert_double_eq(cfg.retention_discarded, 43200);
    ck_assert_int_eq(cfg.nschedules, 1);
    ck_assert_double_eq(cfg.schedules[0].timeout, 90);
    rh_config_free(&cfg);
}
END_TEST

START_TEST(test_fractional_seconds)
{
    rh_config_t cfg;

    expect_ok(MIN_OK "[retry]\nbase_delay = 0.25\nmax_delay = 1.5e1\n"
              "[worker]\npoll_interval = 0.005\n", &cfg);
    ck_assert_double_eq(cfg.retry_base_delay, 0.25);
    ck_assert_double_eq(cfg.retry_max_delay, 15);
    ck_assert_double_eq(cfg.poll_interval, 0.005);
    rh_config_free(&cfg);
}
END_TEST

START_TEST(test_parse_seconds)
{
    double v = -1;

    ck_assert_int_eq(rh_parse_seconds("1", 0, 10, &v), 0);
    ck_assert_double_eq(v, 1);
    ck_assert_int_eq(rh_parse_seconds(" 0.25 ", 0, 10, &v), 0);
    ck_assert_double_eq(v, 0.25);
    ck_assert_int_eq(rh_parse_seconds("30s", 0, 60, &v), 0);
    ck_assert_double_eq(v, 30);
    v = 7;
    ck_assert_int_eq(rh_parse_seconds("11", 0, 10, &v), -1);
    ck_assert_int_eq(rh_parse_seconds("-1", 0, 10, &v), -1);
    ck_assert_int_eq(rh_parse_seconds("1e999", 0, 1e300, &v), -1);
    ck_assert_int_eq(rh_parse_seconds("", 0, 10, &v), -1);
    ck_assert_int_eq(rh_parse_seconds("5x", 0, 10, &v), -1);
    ck_assert_int_eq(rh_parse_seconds("nan", 0, 10, &v), -1);
    ck_assert_int_eq(rh_parse_seconds("-inf", -1e300, 1e300, &v), -1);
    ck_assert_int_eq(rh_parse_seconds("0x10", 0, 100, &v), -1);     /* hex: "0x1d" is not a day */
    ck_assert_int_eq(rh_parse_seconds("2d", 0, 86400, &v), -1);      /* the bounds are in seconds */
    ck_assert_double_eq(v, 7);      /* untouched on error */
    /* each unit */
    ck_assert_int_eq(rh_parse_seconds("500ms", 0, 10, &v), 0);
    ck_assert_double_eq_tol(v, 0.5, 1e-12);
    ck_assert_int_eq(rh_parse_seconds("2s", 0, 10, &v), 0);
    ck_assert_double_eq(v, 2);
    ck_assert_int_eq(rh_parse_seconds("5m", 0, 1e6, &v), 0);
    ck_assert_double_eq(v, 300);
    ck_assert_int_eq(rh_parse_seconds("5min", 0, 1e6, &v), 0);
    ck_assert_double_eq(v, 300);
    ck_assert_int_eq(rh_parse_seconds("1.5h", 0, 1e6, &v), 0);
    ck_assert_double_eq(v, 5400);
    ck_assert_int_eq(rh_parse_seconds(" 1 d ", 0, 1e6, &v), 0);
    ck_assert_double_eq(v, 86400);
    ck_assert_int_eq(rh_parse_seconds(".5", 0, 1, &v), 0);
    ck_assert_double_eq(v, 0.5);
}
END_TEST

START_TEST(test_empty_list_item)
{
    expect_error(MIN_OK "[worker]\nqueues = a,,b\n", "[worker] queues", "empty item", NULL);
    expect_error(MIN_OK "[worker]\nqueues = a, ,b\n", "[worker] queues", NULL);
    expect_error(MIN_OK "[worker]\nqueues = a,\n", "[worker] queues", NULL);
    expect_error("[handlers]\npath = /a.so,,/b.so\n", "[handlers] path", NULL);
}
END_TEST

START_TEST(test_empty_queues)
{
    expect_error(MIN_OK "[worker]\nqueues =\n", "[worker] queues", NULL);
}
END_TEST

START_TEST(test_handlers_path_required)
{
    expect_error("[worker]\nprocesses = 2\n", "[handlers] path", NULL);
    expect_error("", "[handlers] path", NULL);
    expect_error("[handlers]\npath =\n", "[handlers] path", NULL);
}
END_TEST

START_TEST(test_max_below_base)
{
    rh_config_t cfg;

    expect_error(MIN_OK "[retry]\nbase_delay = 10\nmax_delay = 5\n", "[retry] max_delay", "base_delay", NULL);
    /* equal is allowed: a constant delay */
    expect_ok(MIN_OK "[retry]\nbase_delay = 10\nmax_delay = 10\n", &cfg);
    ck_assert_double_eq(cfg.retry_max_delay, 10);
    rh_config_free(&cfg);
}
END_TEST

START_TEST(test_lease_vs_reaper)
{
    expect_error(MIN_OK "[reaper]\ninterval = 5\nlease = 10\n", "[reaper] lease", NULL);
}
END_TEST

START_TEST(test_log_level)
{
    rh_config_t cfg;

    expect_error(MIN_OK "[log]\nlevel = loud\n", "[log] level", "\"loud\"", NULL);
    expect_ok(MIN_OK "[log]\nlevel = warning\n", &cfg);
    ck_assert_int_eq(cfg.log_level, RH_LOG_WARNING);
    rh_config_free(&cfg);
    expect_ok(MIN_OK "[log]\nlevel = error\n", &cfg);
    ck_assert_int_eq(cfg.log_level, RH_LOG_ERROR);
    rh_config_free(&cfg);
}
END_TEST

START_TEST(test_unreadable_file)
{
    rh_config_t cfg;
    char        err[1024] = "";
    char       *path = rt_write_file("rhino.ini", MIN_OK);
    char        missing[4200];

    snprintf(missing, sizeof(missing), "%s.missing", path);
    ck_assert_int_eq(rh_config_load(missing, &cfg, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, missing) != NULL, "message does not name the file: %s", err);
    ck_assert_msg(strstr(err, "No such file") != NULL, "message does not say why: %s", err);
    rh_config_free(&cfg);

    /* root reads any file, so the permission case can only be checked as another user */
    if (geteuid() != 0) {
        ck_assert_int_eq(chmod(path, 0), 0);
        ck_assert_int_eq(rh_config_load(path, &cfg, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, path) != NULL, "message does not name the file: %s", err);
        ck_assert_msg(strstr(err, "ermission denied") != NULL, "message does not say why: %s", err);
        rh_config_free(&cfg);
    }
    free(path);
}
END_TEST

START_TEST(test_syntax_error)
{
    expect_error(MIN_OK "[worker]\nthis line has no equals sign\n", "not a valid INI file", "line 4", NULL);
}
END_TEST

/*
 * A DSN pasted on a line of its own is a syntax error; the message names
 * the line by number and never quotes it (iniparser's own message did,
 * password and all, and it went to the log).
 */
START_TEST(test_syntax_error_hides_the_line)
{
    rh_config_t cfg;
    char        err[1024], *path;
    int         rc;

    rc = load_text(MIN_OK "[database]\npostgres://rhino:S3cretPW@db/app\n", &cfg, err, sizeof(err), &path);
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err, path) && strstr(err, "line 4"), "%s", err);
    ck_assert_msg(strstr(err, "S3cretPW") == NULL && strstr(err, "postgres://") == NULL,
                  "the offending line leaked into the message: %s", err);
    rh_config_free(&cfg);
    free(path);
}
END_TEST

/* A key above the first [section] was ignored without a word; it is refused, named. */
START_TEST(test_key_before_any_section)
{
    rh_config_t cfg;
    char        err[1024], *path;

    ck_assert_int_eq(load_text("processes = 8\n" MIN_OK "[worker]\nbatch_size = 10\n", &cfg, err, sizeof(err), &path),
                     -1);
    ck_assert_msg(strstr(err, path) && strstr(err, "key 'processes' comes before any [section]"), "%s", err);
    rh_config_free(&cfg);
    free(path);
}
END_TEST

/*
 * The shipped sample (etc/rhino.ini.in, from which make writes etc/rhino.ini)
 * loads, and every key of the table is documented where users look for it:
 * in the sample (set or commented out), in rhino.ini(5) and in the README's
 * configuration table.  A key
 * added without its documentation fails here.
 */
START_TEST(test_every_key_is_documented)
{
    const char *src = rt_env("RHINO_TEST_SRCDIR"), *section, *key, *def;
    char        path[4096], err[1024], needle[256];
    char       *sample, *man, *readme;
    rh_config_t cfg;

    snprintf(path, sizeof(path), "%s/../etc/rhino.ini.in", src);
    ck_assert_msg(rh_config_load(path, &cfg, err, sizeof(err)) == 0, "%s", err);
    rh_config_free(&cfg);
    sample = rt_read_file(path);
    snprintf(path, sizeof(path), "%s/../man/rhino.ini.5.in", src);
    man = rt_read_file(path);
    snprintf(path, sizeof(path), "%s/../README.md", src);
    readme = rt_read_file(path);
    ck_assert(sample && man && readme);
    for (size_t i = 0; rh_config_key(i, &section, &key, &def) == 0; i++) {
        int in_sample;

        snprintf(needle, sizeof(needle), "\n%s = ", key);
        in_sample = strstr(sample, needle) != NULL;
        snprintf(needle, sizeof(needle), "\n; %s = ", key);
        in_sample = in_sample || strstr(sample, needle) != NULL;
        snprintf(needle, sizeof(needle), "\n;%s = ", key);
        in_sample = in_sample || strstr(sample, needle) != NULL;
        ck_assert_msg(in_sample, "[%s] %s is not in etc/rhino.ini.in", section, key);
        snprintf(needle, sizeof(needle), "\n.B %s\n", key);
        ck_assert_msg(strstr(man, needle) != NULL, "[%s] %s is not in man/rhino.ini.5.in", section, key);
        snprintf(needle, sizeof(needle), "`[%s] %s`", section, key);
        ck_assert_msg(strstr(readme, needle) != NULL, "[%s] %s is not in the README's table", section, key);
    }
    free(sample);
    free(man);
    free(readme);
}
END_TEST

START_TEST(test_dsn_from_environment)
{
    rh_config_t cfg;

    ck_assert_int_eq(setenv("RHINO_DSN", "postgres://env@127.0.0.1:5999/fromenv", 1), 0);
    expect_ok("[database]\ndsn = host=/from/file\n" MIN_OK, &cfg);
    ck_assert_str_eq(cfg.dsn, "postgres://env@127.0.0.1:5999/fromenv");
    rh_config_free(&cfg);
    /* also without a [database] section, and for the defaults alone */
    expect_ok(MIN_OK, &cfg);
    ck_assert_str_eq(cfg.dsn, "postgres://env@127.0.0.1:5999/fromenv");
    rh_config_free(&cfg);
    rh_config_defaults(&cfg);
    ck_assert_str_eq(cfg.dsn, "postgres://env@127.0.0.1:5999/fromenv");
    rh_config_free(&cfg);

    /* an empty RHINO_DSN does not blank out the file's */
    ck_assert_int_eq(setenv("RHINO_DSN", "", 1), 0);
    expect_ok("[database]\ndsn = host=/from/file\n" MIN_OK, &cfg);
    ck_assert_str_eq(cfg.dsn, "host=/from/file");
    rh_config_free(&cfg);
}
END_TEST

START_TEST(test_split_list)
{
    char **list = NULL;
    int    n = -1;

    ck_assert_int_eq(rh_split_list("  a , b\t,c  ", &list, &n), 0);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(list[0], "a");
    ck_assert_str_eq(list[1], "b");
    ck_assert_str_eq(list[2], "c");
    ck_assert_ptr_null(list[3]);
    rh_free_list(list);

    list = NULL;
    ck_assert_int_eq(rh_split_list("only", &list, &n), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(list[0], "only");
    ck_assert_ptr_null(list[1]);
    rh_free_list(list);

    /* blank: an empty list, not an error (the caller decides whether empty is allowed) */
    list = NULL;
    ck_assert_int_eq(rh_split_list("   ", &list, &n), 0);
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_null(list[0]);
    rh_free_list(list);

    list = NULL;
    ck_assert_int_eq(rh_split_list("a,,b", &list, &n), -1);
    rh_free_list(list);
    list = NULL;
    ck_assert_int_eq(rh_split_list(",a", &list, &n), -1);
    rh_free_list(list);
}
END_TEST

/*
 * A relative [handlers] path is relative to the file's directory, wherever
 * rhino runs from (under systemd the working directory is /).
 */
START_TEST(test_relative_handler_paths)
{
    rh_config_t cfg;
    char        err[1024], want[4096], here[4096], *path, *dir, *slash;

    ck_assert_ptr_nonnull(getcwd(here, sizeof(here)));

    ck_assert_int_eq(load_text("[handlers]\npath = a.so, ./sub/dir, .//b.so, ../up.so, /abs/c.so\n",
                               &cfg, err, sizeof(err), &path), 0);
    dir = strdup(path);
    slash = strrchr(dir, '/');
    ck_assert_ptr_nonnull(slash);
    *slash = '\0';
    ck_assert_int_eq(cfg.nhandler_paths, 5);
    snprintf(want, sizeof(want), "%s/a.so", dir);
    ck_assert_str_eq(cfg.handler_paths[0], want);
    snprintf(want, sizeof(want), "%s/sub/dir", dir);
    ck_assert_str_eq(cfg.handler_paths[1], want);
    snprintf(want, sizeof(want), "%s/b.so", dir);
    ck_assert_str_eq(cfg.handler_paths[2], want);
    snprintf(want, sizeof(want), "%s/../up.so", dir);
    ck_assert_str_eq(cfg.handler_paths[3], want);
    ck_assert_str_eq(cfg.handler_paths[4], "/abs/c.so");
    rh_config_free(&cfg);

    /* a file named relatively: still the file's directory, made absolute */
    ck_assert_int_eq(chdir(dir), 0);
    ck_assert_int_eq(rh_config_load("rhino.ini", &cfg, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "%s/a.so", dir);
    ck_assert_str_eq(cfg.handler_paths[0], want);
    rh_config_free(&cfg);
    ck_assert_int_eq(rh_config_load("./rhino.ini", &cfg, err, sizeof(err)), 0);
    ck_assert_str_eq(cfg.handler_paths[0], want);
    rh_config_free(&cfg);
    ck_assert_int_eq(chdir(".."), 0);
    snprintf(want, sizeof(want), "%s/rhino.ini", strrchr(dir, '/') + 1);
    ck_assert_int_eq(rh_config_load(want, &cfg, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "%s/a.so", dir);
    ck_assert_str_eq(cfg.handler_paths[0], want);
    rh_config_free(&cfg);
    /* and from / as under systemd */
    ck_assert_int_eq(chdir("/"), 0);
    ck_assert_int_eq(rh_config_load(path, &cfg, err, sizeof(err)), 0);
    ck_assert_str_eq(cfg.handler_paths[0], want);
    rh_config_free(&cfg);
    ck_assert_int_eq(chdir(here), 0);     /* for CK_FORK=no */
    free(dir);
    free(path);
}
END_TEST

static void
add(Suite *s, const char *name, const TTest *test)
{
    TCase *tc = tcase_create(name);

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

static Suite *
config_suite(void)
{
    Suite *s = suite_create("config");

    add(s, "full file", test_full_file);
    add(s, "defaults when keys are absent", test_defaults_when_absent);
    add(s, "rh_config_defaults", test_defaults_function);
    add(s, "unknown section", test_unknown_section);
    add(s, "unknown key", test_unknown_key);
    add(s, "processes bounds", test_processes_bounds);
    add(s, "batch_size bounds", test_batch_size_bounds);
    add(s, "bad seconds", test_bad_seconds);
    add(s, "fractional seconds", test_fractional_seconds);
    add(s, "duration units", test_duration_units);
    add(s, "rh_parse_seconds", test_parse_seconds);
    add(s, "empty list item", test_empty_list_item);
    add(s, "empty queue list", test_empty_queues);
    add(s, "handlers path required", test_handlers_path_required);
    add(s, "relative handlers path", test_relative_handler_paths);
    add(s, "max_delay below base_delay", test_max_below_base);
    add(s, "lease shorter than three reaper intervals", test_lease_vs_reaper);
    add(s, "log level", test_log_level);
    add(s, "unreadable file", test_unreadable_file);
    add(s, "INI syntax error", test_syntax_error);
    add(s, "INI syntax error hides the line", test_syntax_error_hides_the_line);
    add(s, "a key before any section", test_key_before_any_section);
    add(s, "every key documented", test_every_key_is_documented);
    add(s, "RHINO_DSN overrides the file", test_dsn_from_environment);
    add(s, "rh_split_list", test_split_list);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int      failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
