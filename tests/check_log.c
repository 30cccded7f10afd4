/*
 * check_log.c - the log line: text and JSON rendering, JSON string escaping,
 * level filtering, switching formats, and the [log] keys of the config.
 *
 * Lines are checked as rh_log writes them: stderr is pointed at a file for
 * the test (check forks every test, so the redirection dies with it).
 */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rh_config.h"
#include "rh_log.h"
#include "rh_testlib.h"

static char capture_path[4096];

/* Point stderr at a fresh file; read it back with captured(). */
static void
capture_stderr(void)
{
    char *path = rt_write_file("stderr.log", "");
    int   fd = open(path, O_WRONLY | O_TRUNC | O_APPEND);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
    snprintf(capture_path, sizeof(capture_path), "%s", path);
    free(path);
}

static char *
captured(void)
{
    char *s = rt_read_file(capture_path);

    ck_assert_ptr_nonnull(s);
    return s;
}

static int
count_lines(const char *s)
{
    int n = 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static char *
escape(const char *s)
{
    static char out[1024];

    rh_log_json_escape(out, sizeof(out), 0, s);
    return out;
}

/* ---------------------------------------------------------------------- */

START_TEST(test_json_escape_quotes_backslashes_newlines)
{
    ck_assert_str_eq(escape("plain text"), "plain text");
    ck_assert_str_eq(escape("say \"hi\""), "say \\\"hi\\\"");
    ck_assert_str_eq(escape("C:\\path\\"), "C:\\\\path\\\\");
    ck_assert_str_eq(escape("line1\nline2\r\n"), "line1\\nline2\\r\\n");
    ck_assert_str_eq(escape("a\tb\bc\fd"), "a\\tb\\bc\\fd");
}
END_TEST

START_TEST(test_json_escape_control_characters)
{
    ck_assert_str_eq(escape("\x01"), "\\u0001");
    ck_assert_str_eq(escape("x\x1fy"), "x\\u001fy");
    ck_assert_str_eq(escape("\x1b[31mred"), "\\u001b[31mred");
    /* DEL is not a control character in JSON */
    ck_assert_str_eq(escape("\x7f"), "\x7f");
}
END_TEST

START_TEST(test_json_escape_utf8)
{
    /* valid UTF-8 passes as it is; invalid bytes become U+FFFD */
    ck_assert_str_eq(escape("gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\xa6\x8f"), "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\xa6\x8f");
    ck_assert_str_eq(escape("bad \xff\xfe end"), "bad \\ufffd\\ufffd end");
    ck_assert_str_eq(escape("cut \xc3"), "cut \\ufffd");
    ck_assert_str_eq(escape("overlong \xc0\xaf"), "overlong \\ufffd\\ufffd");
    ck_assert_str_eq(escape("surrogate \xed\xa0\x80"), "surrogate \\ufffd\\ufffd\\ufffd");
}
END_TEST

START_TEST(test_json_escape_never_splits_an_escape)
{
    char out[8];
    size_t n;

    /* 7 bytes of room (one for the NUL): "ab" + one 6-byte escape would need 9 */
    n = rh_log_json_escape(out, sizeof(out), 0, "ab\x01\x01");
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(out, "ab");
}
END_TEST

START_TEST(test_render_json_line)
{
    char   line[4096], expect[256];
    size_t n;

    rh_log_set_role("worker.3");
    rh_log_format = RH_LOG_JSON;
    n = rh_log_render(line, sizeof(line), RH_LOG_WARNING, "stale \"x\" \\ y\nz\x01\n");
    ck_assert_uint_eq(n, strlen(line));
    ck_assert_msg(strncmp(line, "{\"ts\":\"", 7) == 0, "%s", line);
    /* ts is ISO 8601 UTC with milliseconds */
    ck_assert_int_eq(line[7 + 4], '-');
    ck_assert_int_eq(line[7 + 10], 'T');
    ck_assert_int_eq(line[7 + 23], 'Z');
    snprintf(expect, sizeof(expect), "\",\"level\":\"warning\",\"role\":\"worker.3\",\"pid\":%d,"
             "\"msg\":\"stale \\\"x\\\" \\\\ y\\nz\\u0001\"}\n", (int) getpid());
    ck_assert_str_eq(line + 7 + 24, expect);
    ck_assert_int_eq(count_lines(line), 1);
}
END_TEST

START_TEST(test_render_text_line)
{
    char line[4096], expect[256];

    rh_log_set_role("master");
    rh_log_format = RH_LOG_TEXT;
    rh_log_render(line, sizeof(line), RH_LOG_INFO, "say \"hi\"\nagain\x01\n");
    ck_assert_msg(strncmp(line, "ts=", 3) == 0, "%s", line);
    snprintf(expect, sizeof(expect), " level=info role=master pid=%d msg=\"say \\\"hi\\\"\\nagain \"\n", (int) getpid());
    ck_assert_str_eq(line + 3 + 24, expect);
}
END_TEST

START_TEST(test_render_truncates_to_a_whole_line)
{
    char  line[512], msg[2000];

    memset(msg, '"', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    for (int f = RH_LOG_TEXT; f <= RH_LOG_JSON; f++) {
        size_t n;

        rh_log_format = f;
        n = rh_log_render(line, sizeof(line), RH_LOG_ERROR, msg);
        ck_assert_uint_lt(n, sizeof(line));
        ck_assert_int_eq(line[n - 1], '\n');
        ck_assert_int_eq(count_lines(line), 1);
        /* the string is closed after a whole escape, never after half of one */
        ck_assert_msg(strstr(line, f == RH_LOG_JSON ? "\\\"\"}\n" : "\\\"\"\n") != NULL, "%s", line);
    }
}
END_TEST

START_TEST(test_level_filtering)
{
    char *out;

    capture_stderr();
    rh_log_format = RH_LOG_TEXT;
    rh_log_level = RH_LOG_WARNING;
    rh_log_debug("debug %d", 1);
    rh_log_info("info %d", 2);
    rh_log(RH_LOG_INFO, "info through rh_log %d", 3);
    rh_log_warning("warning %d", 4);
    rh_log_error("error %d", 5);
    out = captured();
    ck_assert_int_eq(count_lines(out), 2);
    ck_assert_ptr_null(strstr(out, "info"));
    ck_assert_ptr_nonnull(strstr(out, "level=warning role=rhino"));
    ck_assert_ptr_nonnull(strstr(out, "msg=\"warning 4\""));
    ck_assert_ptr_nonnull(strstr(out, "msg=\"error 5\""));
    free(out);

    rh_log_level = RH_LOG_DEBUG;
    rh_log_debug("debug %d", 6);
    out = captured();
    ck_assert_int_eq(count_lines(out), 3);
    ck_assert_ptr_nonnull(strstr(out, "level=debug"));
    free(out);
}
END_TEST

START_TEST(test_format_switching)
{
    char *out, *second;

    capture_stderr();
    rh_log_level = RH_LOG_INFO;
    rh_log_format = RH_LOG_TEXT;
    rh_log_info("one");
    rh_log_format = RH_LOG_JSON;
    rh_log_info("two");
    rh_log_format = RH_LOG_TEXT;
    rh_log_info("three");
    out = captured();
    ck_assert_int_eq(count_lines(out), 3);
    ck_assert_msg(strncmp(out, "ts=", 3) == 0, "%s", out);
    second = strchr(out, '\n') + 1;
    ck_assert_msg(strncmp(second, "{\"ts\":", 6) == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(second, "\"level\":\"info\",\"role\":\"rhino\""));
    ck_assert_ptr_nonnull(strstr(second, "\"msg\":\"two\"}\n"));
    ck_assert_msg(strncmp(strchr(second, '\n') + 1, "ts=", 3) == 0, "%s", out);
    free(out);
}
END_TEST

START_TEST(test_syslog_on_still_writes_stderr)
{
    char *out;

    /* whether or not /dev/log exists here, stderr gets the line and nothing breaks */
    capture_stderr();
    rh_log_set_syslog(1);
    rh_log_format = RH_LOG_JSON;
    rh_log_error("to syslog as well");
    rh_log_set_syslog(0);
    rh_log_error("stderr only");
    out = captured();
    ck_assert_int_eq(count_lines(out), 2);
    ck_assert_ptr_nonnull(strstr(out, "\"msg\":\"to syslog as well\"}"));
    free(out);
}
END_TEST

/* ---- the [log] keys ---------------------------------------------------- */

static int
load(const char *log_section, rh_config_t *cfg, char *err, size_t errlen)
{
    char  ini[1024];
    char *path;
    int   rc;

    snprintf(ini, sizeof(ini), "[handlers]\npath = /nonexistent.so\n[log]\n%s", log_section);
    path = rt_write_file("rhino.ini", ini);
    rc = rh_config_load(path, cfg, err, errlen);
    free(path);
    return rc;
}

START_TEST(test_config_log_keys)
{
    rh_config_t cfg;
    char        err[512];

    unsetenv("RHINO_DSN");
    ck_assert_int_eq(load("", &cfg, err, sizeof(err)), 0);
    ck_assert_int_eq(cfg.log_format, RH_LOG_TEXT);
    ck_assert_int_eq(cfg.log_syslog, 0);
    rh_config_free(&cfg);

    ck_assert_msg(load("format = json\nsyslog = on\nlevel = debug\n", &cfg, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(cfg.log_format, RH_LOG_JSON);
    ck_assert_int_eq(cfg.log_syslog, 1);
    ck_assert_int_eq(cfg.log_level, RH_LOG_DEBUG);
    rh_config_free(&cfg);

    ck_assert_msg(load("format = TEXT\nsyslog = off\n", &cfg, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(cfg.log_format, RH_LOG_TEXT);
    ck_assert_int_eq(cfg.log_syslog, 0);
    rh_config_free(&cfg);

    ck_assert_int_eq(load("format = xml\n", &cfg, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "[log] format: \"xml\" is not one of text, json") != NULL, "%s", err);
    rh_config_free(&cfg);
    ck_assert_int_eq(load("syslog = maybe\n", &cfg, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "[log] syslog: \"maybe\" is not on or off") != NULL, "%s", err);
    rh_config_free(&cfg);
}
END_TEST

START_TEST(test_config_bad_dsn_is_refused_without_its_text)
{
    rh_config_t cfg;
    char        err[512];

    setenv("RHINO_DSN", "postgres://app:s3cr%zzet@db.example/app", 1);
    ck_assert_int_eq(load("", &cfg, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "[database] dsn (or RHINO_DSN)") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "s3cr") == NULL && strstr(err, "zzet") == NULL, "the error shows the DSN: %s", err);
    rh_config_free(&cfg);
    unsetenv("RHINO_DSN");
}
END_TEST

static Suite *
log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("json");

    tcase_add_test(tc, test_json_escape_quotes_backslashes_newlines);
    tcase_add_test(tc, test_json_escape_control_characters);
    tcase_add_test(tc, test_json_escape_utf8);
    tcase_add_test(tc, test_json_escape_never_splits_an_escape);
    suite_add_tcase(s, tc);

    tc = tcase_create("lines");
    tcase_add_test(tc, test_render_json_line);
    tcase_add_test(tc, test_render_text_line);
    tcase_add_test(tc, test_render_truncates_to_a_whole_line);
    tcase_add_test(tc, test_level_filtering);
    tcase_add_test(tc, test_format_switching);
    tcase_add_test(tc, test_syslog_on_still_writes_stderr);
    suite_add_tcase(s, tc);

    tc = tcase_create("config");
    tcase_add_test(tc, test_config_log_keys);
    tcase_add_test(tc, test_config_bad_dsn_is_refused_without_its_text);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(log_suite());
    int      failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
