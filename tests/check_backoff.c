/*
 * check_backoff.c - unit tests of common/rh_backoff.c: retry delays stay in
 * their window for every attempt number, and the PRNG that jitters them is
 * uniform enough to spread a failed batch.
 */
#include "config.h"

#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "rh_backoff.h"

static const double us[] = { -0.5, 0, 1e-9, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999999, 1, 1.5 };
#define NUS (sizeof(us) / sizeof(us[0]))

static const struct { double base, max; } windows[] = {
    { 1, 3600 }, { 0.5, 10 }, { 2, 2 }, { 0.001, 86400.0 * 365 }, { 0, 60 }, { 30, 31 },
};
#define NWINDOWS (sizeof(windows) / sizeof(windows[0]))

START_TEST(test_bounds)
{
    for (size_t w = 0; w < NWINDOWS; w++) {
        double base = windows[w].base, max = windows[w].max;

        for (int attempt = 1; attempt <= 200; attempt++) {
            /* base * 2^(attempt-1), without overflowing for the large attempts */
            double growth = base * ldexp(1.0, attempt - 1 > 1000 ? 1000 : attempt - 1);

            for (size_t i = 0; i < NUS; i++) {
                double d = rh_backoff_delay(attempt, base, max, us[i]);

                ck_assert_msg(isfinite(d), "attempt %d u %g: %g", attempt, us[i], d);
                ck_assert_msg(d >= base, "attempt %d base %g u %g: %g is below base", attempt, base, us[i], d);
                ck_assert_msg(d <= max, "attempt %d max %g u %g: %g is above max", attempt, max, us[i], d);
                ck_assert_msg(d <= growth, "attempt %d base %g u %g: %g is above base*2^(n-1) = %g",
                              attempt, base, us[i], d, growth);
            }
        }
    }
}
END_TEST

START_TEST(test_first_attempt_is_base)
{
    for (size_t w = 0; w < NWINDOWS; w++)
        for (size_t i = 0; i < NUS; i++)
            ck_assert_double_eq(rh_backoff_delay(1, windows[w].base, windows[w].max, us[i]), windows[w].base);
}
END_TEST

/* u is what spreads retries: 0 gives the floor, u near 1 the top of the window. */
START_TEST(test_jitter_spans_window)
{
    ck_assert_double_eq(rh_backoff_delay(5, 1, 3600, 0), 1);
    ck_assert_double_eq_tol(rh_backoff_delay(5, 1, 3600, 0.999999), 16, 1e-4);
    ck_assert_double_eq_tol(rh_backoff_delay(5, 1, 3600, 0.5), 8.5, 1e-9);
    /* capped by max once base*2^(n-1) passes it */
    ck_assert_double_eq_tol(rh_backoff_delay(20, 1, 100, 0.999999), 100, 1e-3);
    ck_assert_double_eq_tol(rh_backoff_delay(20, 1, 100, 0.5), 50.5, 1e-9);
    /* monotone in u */
    for (int attempt = 2; attempt < 30; attempt++)
        for (size_t i = 1; i < NUS; i++)
            ck_assert_double_le(rh_backoff_delay(attempt, 1, 3600, us[i - 1]),
                                rh_backoff_delay(attempt, 1, 3600, us[i]));
}
END_TEST

START_TEST(test_huge_attempts)
{
    static const int attempts[] = { 62, 63, 64, 100, 1023, 1024, 1025, 100000, INT_MAX - 1, INT_MAX };

    for (size_t w = 0; w < NWINDOWS; w++)
        for (size_t a = 0; a < sizeof(attempts) / sizeof(attempts[0]); a++)
            for (size_t i = 0; i < NUS; i++) {
                double base = windows[w].base, max = windows[w].max;
                double d = rh_backoff_delay(attempts[a], base, max, us[i]);

                /* base 0 is the trap: 0 * 2^huge is NaN once 2^huge is infinite */
                ck_assert_msg(isfinite(d) && d >= base && d <= max, "attempt %d base %g max %g u %g: %g",
                              attempts[a], base, max, us[i], d);
            }
    ck_assert_double_eq_tol(rh_backoff_delay(INT_MAX, 1, 3600, 0.999999), 3600, 0.01);
}
END_TEST

/* A caller bug (attempt 0 or negative) must still give a sane delay, never a negative one. */
START_TEST(test_attempt_below_one)
{
    for (int attempt = -3; attempt <= 0; attempt++)
        for (size_t i = 0; i < NUS; i++)
            ck_assert_double_eq(rh_backoff_delay(attempt, 1, 3600, us[i]), 1);
    ck_assert_double_eq(rh_backoff_delay(INT_MIN, 2, 10, 0.5), 2);
}
END_TEST

START_TEST(test_rand_range)
{
    uint64_t state = rh_rand_seed();
    double   sum = 0, lo = 1, hi = 0;
    int      buckets[10] = { 0 };
    const int n = 200000;

    for (int i = 0; i < n; i++) {
        double u = rh_rand_unit(&state);

        ck_assert_msg(u >= 0 && u < 1, "draw %d: %.17g is outside [0,1)", i, u);
        sum += u;
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
        buckets[(int) (u * 10)]++;
    }
    ck_assert_double_eq_tol(sum / n, 0.5, 0.01);
    ck_assert_double_lt(lo, 0.001);
    ck_assert_double_gt(hi, 0.999);
    /* each tenth holds about n/10 draws (a generous band, far above chance) */
    for (int b = 0; b < 10; b++)
        ck_assert_msg(buckets[b] > n / 10 * 9 / 10 && buckets[b] < n / 10 * 11 / 10,
                      "bucket %d holds %d of %d draws", b, buckets[b], n);
}
END_TEST

START_TEST(test_rand_not_constant)
{
    uint64_t state = 12345, other = 12345;
    double   first = rh_rand_unit(&state);
    int      changed = 0;

    for (int i = 0; i < 100; i++)
        if (rh_rand_unit(&state) != first)
            changed++;
    ck_assert_int_ge(changed, 99);
    /* the same seed replays the same sequence; another seed does not */
    ck_assert_double_eq(rh_rand_unit(&other), first);
    other = 54321;
    ck_assert_double_ne(rh_rand_unit(&other), first);
}
END_TEST

START_TEST(test_rand_zero_state)
{
    uint64_t state = 0;
    double   a = rh_rand_unit(&state), b = rh_rand_unit(&state);

    /* xorshift sticks at 0 forever; a zero state must be replaced */
    ck_assert_uint_ne(state, 0);
    ck_assert_double_ne(a, b);
    ck_assert(a >= 0 && a < 1 && b >= 0 && b < 1);
}
END_TEST

START_TEST(test_seed_varies)
{
    uint64_t        s1 = rh_rand_seed(), s2;
    struct timespec ts = { 0, 2000000 };

    nanosleep(&ts, NULL);
    s2 = rh_rand_seed();
    ck_assert_uint_ne(s1, 0);
    ck_assert_uint_ne(s1, s2);
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
backoff_suite(void)
{
    Suite *s = suite_create("backoff");

    add(s, "delay stays within base, max and base*2^(n-1)", test_bounds);
    add(s, "attempt 1 waits base", test_first_attempt_is_base);
    add(s, "jitter spans the window", test_jitter_spans_window);
    add(s, "huge attempt numbers", test_huge_attempts);
    add(s, "attempt below 1", test_attempt_below_one);
    add(s, "rh_rand_unit range and spread", test_rand_range);
    add(s, "rh_rand_unit is not constant", test_rand_not_constant);
    add(s, "rh_rand_unit with a zero state", test_rand_zero_state);
    add(s, "rh_rand_seed varies", test_seed_varies);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(backoff_suite());
    int      failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
