/*
 * check_loader.c - unit tests of common/rh_loader.c against real shared
 * objects built from tests/handlers/: a good set loads and dispatches, and
 * each way a handler .so can be wrong stops the load with a message that
 * names the file and the problem.
 *
 * The .so files live in RHINO_TEST_HANDLERS (set by `make check`).  This
 * program is linked like rhino, exporting the rhino_job_* accessors, so the
 * handlers resolve them from here exactly as they would in the daemon.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rh_job.h"
#include "rh_loader.h"
#include "rh_testlib.h"

/* The path of a test handler; malloc'd. */
static char *
handler(const char *name)
{
    char *path;

    ck_assert_int_ge(asprintf(&path, "%s/%s", rt_env("RHINO_TEST_HANDLERS"), name), 0);
    ck_assert_msg(access(path, R_OK) == 0, "%s is missing: was it built (make check)?", path);
    return path;
}

/* A fresh empty directory (removed when the test exits); malloc'd. */
static char *
scratch_dir(void)
{
    char *file = rt_write_file("placeholder", "");
    char *dir;

    ck_assert_int_eq(unlink(file), 0);
    dir = strdup(dirname(file));
    ck_assert_ptr_nonnull(dir);
    free(file);
    return dir;
}

/* dir/name -> target, so that a directory holds chosen handlers under chosen names. */
static char *
link_into(const char *dir, const char *name, const char *target)
{
    char *path;

    ck_assert_int_ge(asprintf(&path, "%s/%s", dir, name), 0);
    if (symlink(target, path) < 0)
        ck_abort_msg("symlink %s -> %s: %s", path, target, strerror(errno));
    return path;
}

/*
 * Load the NULL-terminated paths and expect failure with a message holding
 * every one of the NULL-terminated substrings that follow the paths.
 */
static void
expect_fail(char *const *paths, ...)
{
    rh_registry_t reg;
    char          err[2048] = "";
    int           n = 0;
    const char   *want;
    va_list       ap;

    while (paths[n] != NULL)
        n++;
    ck_assert_msg(rh_loader_load(&reg, paths, n, err, sizeof(err)) == -1, "the load succeeded");
    ck_assert_int_eq(reg.n, 0);
    ck_assert_int_eq(reg.ndl, 0);
    va_start(ap, paths);
    while ((want = va_arg(ap, const char *)) != NULL)
        ck_assert_msg(strstr(err, want) != NULL, "message lacks \"%s\": %s", want, err);
    va_end(ap);
}

START_TEST(test_load_good)
{
    char               *so = handler("test_handlers.so");
    char               *paths[] = { so, NULL };
    rh_registry_t       reg;
    char                err[2048] = "", kinds[4096];
    const rh_handler_t *h;

    if (rh_loader_load(&reg, paths, 1, err, sizeof(err)) != 0)
        ck_abort_msg("loading %s failed: %s", so, err);
    ck_assert_int_ge(reg.n, 2);
    ck_assert_int_eq(reg.ndl, 1);
    ck_assert_str_eq(reg.so_paths[0], so);

    h = rh_loader_find(&reg, "ok");
    ck_assert_ptr_nonnull(h);
    ck_assert_str_eq(h->kind, "ok");
    ck_assert_str_eq(h->so, so);
    ck_assert_ptr_nonnull(h->fn);
    ck_assert_ptr_null(rh_loader_find(&reg, "no_such_kind"));
    ck_assert_ptr_null(rh_loader_find(&reg, ""));

    /* every kind is found, and the registry is sorted for the binary search */
    for (int i = 0; i < reg.n; i++) {
        const rh_handler_t *f = rh_loader_find(&reg, reg.handlers[i].kind);

        ck_assert_ptr_nonnull(f);
        ck_assert_str_eq(f->kind, reg.handlers[i].kind);
        if (i > 0)
            ck_assert_str_lt(reg.handlers[i - 1].kind, reg.handlers[i].kind);
    }

    rh_loader_kinds(&reg, kinds, sizeof(kinds));
    ck_assert_msg(strstr(kinds, "ok") != NULL, "kinds: %s", kinds);
    ck_assert_msg(strstr(kinds, ", ") != NULL, "kinds: %s", kinds);

    rh_loader_unload(&reg);
    ck_assert_int_eq(reg.n, 0);
    ck_assert_ptr_null(reg.handlers);
    free(so);
}
END_TEST

START_TEST(test_call_handler)
{
    char               *so = handler("test_handlers.so");
    char               *paths[] = { so, NULL };
    rh_registry_t       reg;
    char                err[2048] = "";
    const rh_handler_t *h;
    rhino_job           job;
    static const char   payload[] = "{\"n\": 1}";

    ck_assert_msg(rh_loader_load(&reg, paths, 1, err, sizeof(err)) == 0, "%s", err);
    h = rh_loader_find(&reg, "ok");
    ck_assert_ptr_nonnull(h);
    memset(&job, 0, sizeof(job));
    job.id = 42;
    job.attempt = 1;
    job.max_attempts = 3;
    job.queue = "default";
    job.kind = "ok";
    job.payload = payload;
    job.payload_len = sizeof(payload) - 1;
    ck_assert_int_eq(h->fn(&job), RHINO_OK);
    ck_assert_int_eq(job.has_error, 0);
    rh_loader_unload(&reg);
    free(so);
}
END_TEST

/* The accessors a handler calls; exported from this program as from rhino. */
START_TEST(test_job_accessors)
{
    rhino_job job;

    memset(&job, 0, sizeof(job));
    job.id = 9000000000LL;
    job.attempt = 2;
    job.max_attempts = 5;
    job.queue = "mail";
    job.kind = "send";
    job.payload = "{}";
    job.payload_len = 2;
    ck_assert_int_eq(rhino_job_id(&job), 9000000000LL);
    ck_assert_int_eq(rhino_job_attempt(&job), 2);
    ck_assert_int_eq(rhino_job_max_attempts(&job), 5);
    ck_assert_str_eq(rhino_job_queue(&job), "mail");
    ck_assert_str_eq(rhino_job_kind(&job), "send");
    ck_assert_str_eq(rhino_job_payload(&job), "{}");
    ck_assert_uint_eq(rhino_job_payload_len(&job), 2);
    rhino_job_set_error(&job, "code %d", 451);
    ck_assert_int_eq(job.has_error, 1);
    ck_assert_str_eq(job.error, "code 451");
}
END_TEST

START_TEST(test_bad_abi)
{
    char *so = handler("bad_abi.so");
    char *paths[] = { so, NULL };

    expect_fail(paths, so, "ABI", "99", NULL);
    free(so);
}
END_TEST

START_TEST(test_no_handlers)
{
    char *so = handler("no_handlers.so");
    char *paths[] = { so, NULL };

    expect_fail(paths, so, "rhino_module_handlers", NULL);
    free(so);
}
END_TEST

START_TEST(test_undefined_symbol)
{
    char *so = handler("undefined_sym.so");
    char *paths[] = { so, NULL };

    expect_fail(paths, so, "undefined symbol", "rhino_test_no_such_function", NULL);
    free(so);
}
END_TEST

START_TEST(test_duplicate_kind)
{
    char *good = handler("test_handlers.so");
    char *dup = handler("dup_kind.so");
    char *paths[] = { good, dup, NULL };
    char *reversed[] = { dup, good, NULL };

    expect_fail(paths, "two handlers", "\"ok\"", good, dup, NULL);
    expect_fail(reversed, "two handlers", "\"ok\"", NULL);
    free(good);
    free(dup);
}
END_TEST

START_TEST(test_missing_path)
{
    char *dir = scratch_dir();
    char *missing;
    char *paths[2];

    ck_assert_int_ge(asprintf(&missing, "%s/nowhere.so", dir), 0);
    paths[0] = missing;
    paths[1] = NULL;
    unsetenv("INVOCATION_ID");
    expect_fail(paths, missing, "No such file", NULL);
    {
        rh_registry_t reg;
        char          err[2048];

        ck_assert_int_eq(rh_loader_load(&reg, paths, 1, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, "systemd") == NULL, "a sandbox hint outside systemd: %s", err);
    }
    /* under systemd, a hint that the unit's sandbox may hide the file */
    setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef", 1);
    expect_fail(paths, missing, "No such file", "PrivateTmp", "ProtectHome", "/handlers", NULL);
    unsetenv("INVOCATION_ID");
    free(missing);
    free(dir);
}
END_TEST

/* A good file followed by a bad one: the good one does not make the load succeed. */
START_TEST(test_first_good_then_bad)
{
    char *good = handler("test_handlers.so");
    char *bad = handler("no_handlers.so");
    char *paths[] = { good, bad, NULL };

    expect_fail(paths, bad, "rhino_module_handlers", NULL);
    free(good);
    free(bad);
}
END_TEST

START_TEST(test_directory)
{
    char               *dir = scratch_dir();
    char               *good = handler("test_handlers.so");
    char               *paths[] = { dir, NULL };
    char               *so, *decoy;
    rh_registry_t       reg;
    char                err[2048] = "";
    FILE               *f;

    so = link_into(dir, "handlers.so", good);
    /* only *.so is loaded: neither a text file nor a versioned library name */
    ck_assert_int_ge(asprintf(&decoy, "%s/README.txt", dir), 0);
    f = fopen(decoy, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not a shared object\n", f);
    fclose(f);
    free(decoy);
    free(link_into(dir, "libfoo.so.1", good));
    free(link_into(dir, "notes.so.txt", good));

    if (rh_loader_load(&reg, paths, 1, err, sizeof(err)) != 0)
        ck_abort_msg("loading the directory %s failed: %s", dir, err);
    ck_assert_int_eq(reg.ndl, 1);
    ck_assert_str_eq(reg.so_paths[0], so);
    ck_assert_ptr_nonnull(rh_loader_find(&reg, "ok"));
    rh_loader_unload(&reg);
    free(so);
    free(good);
    free(dir);
}
END_TEST

/*
 * Every .so of a directory is loaded, in name order.  Only two good handler
 * objects exist and they clash on "ok", so the orders are observed through
 * which file a failure names: created in reverse order so that readdir()
 * order (creation order on some file systems) cannot pass for name order.
 */
START_TEST(test_directory_name_order)
{
    char *dir1 = scratch_dir(), *dir2 = scratch_dir(), *dir3 = scratch_dir();
    char *good = handler("test_handlers.so"), *dup = handler("dup_kind.so");
    char *noh = handler("no_handlers.so"), *abi = handler("bad_abi.so");
    char *a, *b;
    char *paths[2] = { NULL, NULL };

    /*
     * All bad: the first in name order is the one reported.  Twelve names,
     * so that a hashed readdir() order matching name order by luck is unlikely.
     */
    for (int i = 11; i >= 0; i--) {
        char name[16];

        snprintf(name, sizeof(name), "k%02d.so", i);
        free(link_into(dir1, name, i % 2 ? abi : noh));
    }
    ck_assert_int_ge(asprintf(&a, "%s/k00.so", dir1), 0);
    paths[0] = dir1;
    expect_fail(paths, a, "rhino_module_handlers", NULL);
    free(a);

    /* a good one first, then a bad one: both are tried */
    b = link_into(dir2, "b.so", abi);
    a = link_into(dir2, "a.so", good);
    paths[0] = dir2;
    expect_fail(paths, b, "ABI", "99", NULL);
    free(a);
    free(b);

    /* two good ones: both loaded, so the clash between them is seen */
    b = link_into(dir3, "b.so", dup);
    a = link_into(dir3, "a.so", good);
    paths[0] = dir3;
    expect_fail(paths, "two handlers", "\"ok\"", a, b, NULL);
    free(a);
    free(b);

    free(dir1);
    free(dir2);
    free(dir3);
    free(good);
    free(dup);
    free(noh);
    free(abi);
}
END_TEST

START_TEST(test_empty_directory)
{
    char *dir = scratch_dir();
    char *paths[] = { dir, NULL };

    expect_fail(paths, dir, "no .so", NULL);
    free(dir);
}
END_TEST

START_TEST(test_no_paths)
{
    rh_registry_t reg;
    char          err[2048] = "";
    char         *paths[] = { NULL };

    ck_assert_int_eq(rh_loader_load(&reg, paths, 0, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "no handlers") != NULL, "%s", err);
}
END_TEST

/* Write src's bytes over dst as cp does (O_TRUNC: dst keeps its inode). */
static void
copy_over(const char *src, const char *dst)
{
    char   *text = rt_read_file(src);
    FILE   *in = fopen(src, "rb");
    size_t  n;
    int     fd;

    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(in);
    ck_assert_int_eq(fseek(in, 0, SEEK_END), 0);
    n = (size_t) ftell(in);
    fclose(in);
    fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    ck_assert_msg(fd >= 0, "open %s: %s", dst, strerror(errno));
    ck_assert_int_eq(write(fd, text, n), (ssize_t) n);
    ck_assert_int_eq(close(fd), 0);
    free(text);
}

/*
 * What is loaded is a private copy taken at load time: the file
 * overwritten in place afterwards (another library, same inode) changes
 * neither the kinds nor the code.  Loaded from the file itself, the
 * overwrite changed the mapped pages: lookups missed kinds the registry
 * listed, and code ran from the new bytes (or died of SIGBUS).
 */
START_TEST(test_overwrite_after_load)
{
    char               *dir = scratch_dir(), *good = handler("test_handlers.so"), *other = handler("dup_kind.so");
    char               *so, *paths[2] = { NULL, NULL };
    rh_registry_t       reg;
    char                err[2048] = "", kinds[4096], kinds_after[4096];
    const rh_handler_t *h;
    rhino_job           job;
    static const char   payload[] = "{}";

    ck_assert_int_ge(asprintf(&so, "%s/handlers.so", dir), 0);
    copy_over(good, so);
    paths[0] = so;
    ck_assert_msg(rh_loader_load(&reg, paths, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(reg.so_paths[0], so);
    rh_loader_kinds(&reg, kinds, sizeof(kinds));
    copy_over(other, so);

    rh_loader_kinds(&reg, kinds_after, sizeof(kinds_after));
    ck_assert_str_eq(kinds_after, kinds);
    for (int i = 0; i < reg.n; i++)
        ck_assert_ptr_nonnull(rh_loader_find(&reg, reg.handlers[i].kind));
    h = rh_loader_find(&reg, "ok");
    ck_assert_ptr_nonnull(h);
    memset(&job, 0, sizeof(job));
    job.id = 1;
    job.attempt = 1;
    job.max_attempts = 3;
    job.queue = "default";
    job.kind = "ok";
    job.payload = payload;
    job.payload_len = sizeof(payload) - 1;
    ck_assert_int_eq(h->fn(&job), RHINO_OK);
    rh_loader_unload(&reg);
    free(so);
    free(good);
    free(other);
    free(dir);
}
END_TEST

/*
 * A kind the registry lists is always found: should its table be out of
 * order (a bug), the lookup falls back to a scan instead of failing every
 * job with "no handler for kind X (loaded: ... X ...)".
 */
START_TEST(test_lookup_survives_an_unsorted_table)
{
    char          *so = handler("test_handlers.so");
    char          *paths[] = { so, NULL };
    rh_registry_t  reg;
    char           err[2048] = "";

    ck_assert_msg(rh_loader_load(&reg, paths, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_ge(reg.n, 3);
    for (int i = 0, j = reg.n - 1; i < j; i++, j--) {
        rh_handler_t t = reg.handlers[i];

        reg.handlers[i] = reg.handlers[j];
        reg.handlers[j] = t;
    }
    for (int i = 0; i < reg.n; i++) {
        const rh_handler_t *h = rh_loader_find(&reg, reg.handlers[i].kind);

        ck_assert_ptr_nonnull(h);
        ck_assert_str_eq(h->kind, reg.handlers[i].kind);
    }
    ck_assert_ptr_null(rh_loader_find(&reg, "no_such_kind"));
    rh_loader_unload(&reg);
    free(so);
}
END_TEST

static void
add(Suite *s, const char *name, const TTest *test)
{
    TCase *tc = tcase_create(name);

    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

static Suite *
loader_suite(void)
{
    Suite *s = suite_create("loader");

    add(s, "load test_handlers.so and find kinds", test_load_good);
    add(s, "call a loaded handler", test_call_handler);
    add(s, "job accessors", test_job_accessors);
    add(s, "ABI mismatch", test_bad_abi);
    add(s, "no rhino_module_handlers", test_no_handlers);
    add(s, "undefined symbol", test_undefined_symbol);
    add(s, "two handlers for one kind", test_duplicate_kind);
    add(s, "missing path", test_missing_path);
    add(s, "good file then bad file", test_first_good_then_bad);
    add(s, "directory of .so files", test_directory);
    add(s, "directory loads in name order", test_directory_name_order);
    add(s, "empty directory", test_empty_directory);
    add(s, "no paths at all", test_no_paths);
    add(s, "a file overwritten after the load", test_overwrite_after_load);
    add(s, "lookup in an unsorted table", test_lookup_survives_an_unsorted_table);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(loader_suite());
    int      failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
