/*
 * bench_handlers.c - the handlers rhino-bench runs: bench.noop, which does
 * nothing, so that a drain measures Rhino and PostgreSQL and not the work,
 * and bench.stamp, which records how long a job waited for its handler.
 *
 * bench.stamp reads the enqueue time that rhino-bench put into the payload
 * ({"t": <CLOCK_REALTIME in microseconds>, "i": <the job's number>}) and
 * appends one line "<t> <now - t> <i>\n" (microseconds; i is -1 if the
 * payload has none) to the file named by RHINO_BENCH_STAMP_FILE,
 * which the workers inherit from the rhino that rhino-bench starts.  The clock
 * is the wall clock because the enqueuer and the worker are different
 * processes; both run on the same machine, so they read the same clock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rhino.h>

static int
noop(rhino_job *job)
{
    (void) job;
    return RHINO_OK;
}
RHINO_HANDLER("bench.noop", noop);

/*
 * Opened once per worker process and kept: an open() per job would cost
 * more than everything else the handler does.  O_APPEND makes each line's
 * single write() land whole, whichever worker writes it.  -2: not tried yet.
 */
static int stamp_fd = -2;

static int
stamp_file(void)
{
    const char *path;

    if (stamp_fd != -2)
        return stamp_fd;
    path = getenv("RHINO_BENCH_STAMP_FILE");
    stamp_fd = path != NULL && *path != '\0'
        ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : -1;
    return stamp_fd;
}

static int
stamp(rhino_job *job)
{
    struct timespec ts;
    const char     *p = strstr(rhino_job_payload(job), "\"t\"");
    const char     *pi = strstr(rhino_job_payload(job), "\"i\"");
    long long       t, now, i = -1;
    char            line[64];
    int             fd, n;

    /* the time first: everything after it is the handler's own cost */
    clock_gettime(CLOCK_REALTIME, &ts);
    now = (long long) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    if (p == NULL || (p = strchr(p, ':')) == NULL) {
        rhino_job_set_error(job, "bench.stamp: the payload has no \"t\" (the enqueue time in microseconds)");
        return RHINO_DISCARD;
    }
    errno = 0;
    t = strtoll(p + 1, NULL, 10);
    if (errno != 0 || t <= 0) {
        rhino_job_set_error(job, "bench.stamp: \"t\" in the payload is not a positive number of microseconds");
        return RHINO_DISCARD;
    }
    if (pi != NULL && (pi = strchr(pi, ':')) != NULL)
        i = strtoll(pi + 1, NULL, 10);
    fd = stamp_file();
    if (fd < 0)
        return RHINO_OK;        /* nobody asked for the latencies */
    n = snprintf(line, sizeof(line), "%lld %lld %lld\n", t, now - t, i);
    if (write(fd, line, (size_t) n) != n) {
        /* rhino-bench counts the lines: a missing one shows up as a missing sample */
    }
    return RHINO_OK;
}
RHINO_HANDLER("bench.stamp", stamp);
