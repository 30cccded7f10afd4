/*
 * rb_facts.c - what a benchmark number means nothing without: the machine
 * (host, CPUs, CPU model, kernel, and its load average when the record was
 * written), the PostgreSQL server (version and the settings that move the
 * numbers most) and the commit of the code measured.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/utsname.h>

#include "rb_facts.h"
#include "rb_pg.h"

static struct {
    char hostname[256];
    long nproc;
    char cpu_model[256];
    char kernel[256];
    char pg_version[128];
    char synchronous_commit[32];
    char shared_buffers[32];
    char fsync[16];
    char max_wal_size[32];
    char git_commit[128];
    char line[2048];
} F;

/* "model name : Intel(R) ..." from /proc/cpuinfo; "unknown" where there is none (some ARM kernels). */
static void
cpu_model(char *out, size_t size)
{
    FILE *fp = fopen("/proc/cpuinfo", "r");
    char  line[512];

    snprintf(out, size, "unknown");
    if (fp == NULL)
        return;
    while (fgets(line, sizeof(line), fp) != NULL) {
        char *colon = strchr(line, ':');

        if (strncmp(line, "model name", 10) != 0 || colon == NULL)
            continue;
        colon++;
        while (*colon == ' ' || *colon == '\t')
            colon++;
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(out, size, "%s", colon);
        break;
    }
    fclose(fp);
}

/*
 * The commit of the source tree rhino-bench was built from, with "-dirty"
 * when it had changes.  An installed copy usually has no source tree: then
 * RHINO_BENCH_COMMIT (set by whoever knows) or null.
 */
static void
git_commit(const char *srcdir, char *out, size_t size)
{
    const char *env = getenv("RHINO_BENCH_COMMIT");
    char        cmd[4200], gitdir[4200];
    FILE       *fp;

    out[0] = '\0';
    if (env != NULL && *env != '\0') {
        snprintf(out, size, "%s", env);
        return;
    }
    if (srcdir == NULL || *srcdir == '\0' || strchr(srcdir, '\'') != NULL)
        return;
    snprintf(gitdir, sizeof(gitdir), "%s/.git", srcdir);
    if (access(gitdir, F_OK) != 0)
        return;
    snprintf(cmd, sizeof(cmd), "git -C '%s' describe --always --dirty --abbrev=12 2>/dev/null", srcdir);
    fp = popen(cmd, "r");
    if (fp == NULL)
        return;
    if (fgets(out, (int) size, fp) == NULL)
        out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    pclose(fp);
}

void
rb_facts_collect(PGconn *conn, const char *srcdir)
{
    struct utsname u;
    PGresult      *res;

    if (gethostname(F.hostname, sizeof(F.hostname)) != 0)
        snprintf(F.hostname, sizeof(F.hostname), "unknown");
    F.hostname[sizeof(F.hostname) - 1] = '\0';
    F.nproc = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_model(F.cpu_model, sizeof(F.cpu_model));
    if (uname(&u) == 0)
        snprintf(F.kernel, sizeof(F.kernel), "%s %s %s", u.sysname, u.release, u.machine);
    else
        snprintf(F.kernel, sizeof(F.kernel), "unknown");

    res = rb_pg_run(conn, RB_SQL_FACTS, NULL);
    snprintf(F.pg_version, sizeof(F.pg_version), "%s", PQgetvalue(res, 0, 0));
    snprintf(F.synchronous_commit, sizeof(F.synchronous_commit), "%s", PQgetvalue(res, 0, 1));
    snprintf(F.shared_buffers, sizeof(F.shared_buffers), "%s", PQgetvalue(res, 0, 2));
    snprintf(F.fsync, sizeof(F.fsync), "%s", PQgetvalue(res, 0, 3));
    snprintf(F.max_wal_size, sizeof(F.max_wal_size), "%s", PQgetvalue(res, 0, 4));
    if (atoi(PQgetvalue(res, 0, 5)) < 150000) {
        PQclear(res);
        rb_die("PostgreSQL %s is too old for the measurements: pg_stat_force_next_flush() needs 15 or newer",
               F.pg_version);
    }
    PQclear(res);
    git_commit(srcdir, F.git_commit, sizeof(F.git_commit));
    snprintf(F.line, sizeof(F.line),
             "PostgreSQL %s (synchronous_commit=%s, fsync=%s, shared_buffers=%s, max_wal_size=%s) on %s, "
             "%ld CPUs (%s), %s; commit %s",
             F.pg_version, F.synchronous_commit, F.fsync, F.shared_buffers, F.max_wal_size, F.hostname,
             F.nproc, F.cpu_model, F.kernel, F.git_commit[0] ? F.git_commit : "unknown");
}

/* The 1-minute load average now: on a shared machine, what else ran beside the measurement. */
static double
loadavg(void)
{
    FILE  *fp = fopen("/proc/loadavg", "r");
    double v = -1;

    if (fp != NULL) {
        if (fscanf(fp, "%lf", &v) != 1)
            v = -1;
        fclose(fp);
    }
    return v;
}

void
rb_facts_json(rb_json_t *j)
{
    double load = loadavg();

    rb_json_begin(j, "machine");
    rb_json_str(j, "hostname", F.hostname);
    rb_json_int(j, "nproc", F.nproc);
    rb_json_str(j, "cpu_model", F.cpu_model);
    rb_json_str(j, "kernel", F.kernel);
    if (load >= 0)
        rb_json_num(j, "loadavg_1m", load, 2);
    else
        rb_json_null(j, "loadavg_1m");
    rb_json_end(j);
    rb_json_begin(j, "postgres");
    rb_json_str(j, "version", F.pg_version);
    rb_json_str(j, "synchronous_commit", F.synchronous_commit);
    rb_json_str(j, "shared_buffers", F.shared_buffers);
    rb_json_str(j, "fsync", F.fsync);
    rb_json_str(j, "max_wal_size", F.max_wal_size);
    rb_json_end(j);
    rb_json_str(j, "git_commit", F.git_commit[0] ? F.git_commit : NULL);
}

const char *
rb_facts_line(void)
{
    return F.line;
}
