/*
 * rb_cluster.c - a throwaway PostgreSQL cluster for rhino-bench.
 *
 * Without --dsn or RHINO_DSN, rhino-bench measures against a cluster of its
 * own: initdb in a fresh directory, the settings of the peers' reference
 * cluster (../shared/peers/pg.sh, so that the numbers compare), a Unix
 * socket in that directory and no TCP port (nothing else can reach it, and
 * no port can be taken), trust authentication for the same reason.  It is
 * stopped and deleted when rhino-bench exits, however it exits short of
 * SIGKILL.  The server binaries are found in $RHINO_PG_BIN, else in the
 * newest /usr/lib/postgresql/N/bin (Debian's layout), else on the PATH.
 */
#include "config.h"

#include "rb_cluster.h"
#include "rb_util.h"

#include <libpq-fe.h>

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The prefix of the cluster's directory: rb_cluster_stop deletes nothing else. */
#define RB_CLUSTER_PREFIX "rhino-bench-pg-"

static char  base[256];         /* the cluster's directory; "" when there is none */
static char  bindir[256];       /* initdb, pg_ctl */
static pid_t owner_pid;         /* the rhino-bench process that made it (not a forked child) */
static int   started;           /* pg_ctl start ran: stop the server before deleting */
static int   starting;          /* rb_cluster_start has not finished: on failure keep the logs */
static uid_t run_uid = (uid_t) -1;
static gid_t run_gid = (gid_t) -1;

/*
 * The settings, those of ../shared/peers/pg.sh but for what would tie the
 * cluster to one machine (effective_cache_size, a 1GB shared_buffers that a
 * small host could not give): durable commits, as everywhere in the docs.
 */
static const char rb_cluster_conf[] =
    "\n# added by rhino-bench for its throwaway cluster\n"
    "listen_addresses = ''\n"
    "max_connections = 200\n"
    "shared_buffers = 256MB\n"
    "work_mem = 16MB\n"
    "maintenance_work_mem = 256MB\n"
    "wal_buffers = 16MB\n"
    "max_wal_size = 8GB\n"
    "min_wal_size = 1GB\n"
    "checkpoint_timeout = 15min\n"
    "checkpoint_completion_target = 0.9\n"
    "synchronous_commit = on\n"
    "fsync = on\n"
    "full_page_writes = on\n"
    "random_page_cost = 1.1\n"
    "jit = off\n"
    "log_min_messages = warning\n"
    "timezone = 'UTC'\n";

static int
executable(const char *dir, const char *name)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, X_OK) == 0;
}

/* Where initdb and pg_ctl are; dies with what to install or set when nowhere. */
static void
find_bindir(void)
{
    const char *env = getenv("RHINO_PG_BIN");
    glob_t      g;

    if (env != NULL && *env != '\0') {
        if (!executable(env, "initdb") || !executable(env, "pg_ctl"))
            rb_die("RHINO_PG_BIN=%s: no initdb and pg_ctl there", env);
        snprintf(bindir, sizeof(bindir), "%s", env);
        return;
    }
    /* Debian: /usr/lib/postgresql/15/bin; the highest version number (not the last name: "9.6" > "15") */
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0) {
        double best = -1;

        for (size_t i = 0; i < g.gl_pathc; i++) {
            char  *slash = strrchr(g.gl_pathv[i], '/');
            double v = strtod(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL);

            *slash = '\0';
            if (v > best && executable(g.gl_pathv[i], "pg_ctl")) {
                best = v;
                snprintf(bindir, sizeof(bindir), "%s", g.gl_pathv[i]);
            }
        }
        globfree(&g);
        if (bindir[0] != '\0')
            return;
    }
    {
        const char *path = getenv("PATH");
        char       *copy = rb_xstrdup(path ? path : ""), *save = NULL;

        for (char *d = strtok_r(copy, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save))
            if (*d != '\0' && executable(d, "initdb") && executable(d, "pg_ctl")) {
                snprintf(bindir, sizeof(bindir), "%s", d);
                break;
            }
        free(copy);
    }
    if (bindir[0] == '\0')
        rb_die("no database given (--dsn, RHINO_DSN) and no PostgreSQL server to start one: initdb and pg_ctl "
               "are neither in /usr/lib/postgresql/*/bin nor on the PATH (install postgresql-15, or set "
               "RHINO_PG_BIN to their directory)");
}

/*
 * Run bindir/argv[0] as the cluster's owner, from /, its output appended to
 * base/setup.log; its exit status (0 = fine), or -1 when it could not be
 * run (said on stderr).  It never exits: rb_cluster_stop calls it from
 * atexit, where exit() again would be undefined.
 */
static int
run_owner(char *const argv[])
{
    char  prog[512], log[512];
    pid_t pid;
    int   status, fd;

    snprintf(prog, sizeof(prog), "%s/%s", bindir, argv[0]);
    snprintf(log, sizeof(log), "%s/setup.log", base);
    fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || (run_uid != (uid_t) -1 && fchown(fd, run_uid, run_gid) < 0)) {
        fprintf(stderr, "rhino-bench: cannot open %s for the postgres user: %s\n", log, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "rhino-bench: fork() failed while running %s: %s\n", prog, strerror(errno));
        close(fd);
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);

        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (run_uid != (uid_t) -1 &&
            (setgroups(0, NULL) < 0 || setgid(run_gid) < 0 || setuid(run_uid) < 0))
            _exit(126);
        if (chdir("/") < 0)
            _exit(126);
        execv(prog, argv);
        _exit(127);
    }
    close(fd);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "rhino-bench: waitpid() failed while running %s: %s\n", prog, strerror(errno));
            return -1;
        }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void
rb_cluster_stop(void)
{
    char  data[512];
    char *argv[] = { "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", NULL };
    const char *name;

    /* a forked child that exits (never rhino-bench's own exit) must not stop the parent's cluster */
    if (base[0] == '\0' || getpid() != owner_pid)
        return;
    snprintf(data, sizeof(data), "%s/data", base);
    if (started && run_owner(argv) != 0)
        fprintf(stderr, "rhino-bench: stopping the throwaway cluster in %s failed (see %s/setup.log); "
                "it is left there\n", base, base);
    else if (starting)
        fprintf(stderr, "rhino-bench: kept the throwaway cluster's directory %s for its logs\n", base);
    else {
        name = strrchr(base, '/');
        if (name != NULL && strncmp(name + 1, RB_CLUSTER_PREFIX, strlen(RB_CLUSTER_PREFIX)) == 0)
            rb_rmtree(base);
    }
    started = 0;
    base[0] = '\0';
}

/* Append the settings to postgresql.conf (the file is the owner's; we may be root). */
static void
write_conf(void)
{
    char  path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/data/postgresql.conf", base);
    f = fopen(path, "a");
    if (f == NULL)
        rb_die("cannot open %s: %s", path, strerror(errno));
    fputs(rb_cluster_conf, f);
    fprintf(f, "unix_socket_directories = '%s'\n", base);
    if (fclose(f) != 0)
        rb_die("cannot write %s: %s", path, strerror(errno));
}

void
rb_cluster_start(char *dsn, size_t dsnlen)
{
    const char *tmp = getenv("TMPDIR");
    char        data[512], log[512], conninfo[512];
    PGconn     *conn;
    PGresult   *res;

    find_bindir();
    owner_pid = getpid();
    starting = 1;
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");

        if (pw == NULL)
            rb_die("no database given (--dsn, RHINO_DSN), and PostgreSQL refuses to run as root while there "
                   "is no postgres user to run a throwaway cluster as (install postgresql-15)");
        run_uid = pw->pw_uid;
        run_gid = pw->pw_gid;
    }
    snprintf(base, sizeof(base), "%s/" RB_CLUSTER_PREFIX "XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(base) == NULL) {
        int e = errno;

        base[0] = '\0';
        rb_die("cannot create a directory for the throwaway cluster under %s: %s", tmp && *tmp ? tmp : "/tmp",
               strerror(e));
    }
    if (run_uid != (uid_t) -1 && chown(base, run_uid, run_gid) < 0)
        rb_die("cannot hand %s to the postgres user: %s", base, strerror(errno));
    snprintf(data, sizeof(data), "%s/data", base);
    snprintf(log, sizeof(log), "%s/server.log", base);
    fprintf(stderr, "rhino-bench: no database given (--dsn, RHINO_DSN): starting a throwaway cluster in %s "
            "(%s), deleted at exit\n", base, bindir);
    {
        /* --no-sync: a crash of this machine during initdb loses nothing anyone wants */
        char *argv[] = { "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                         "--locale=C.UTF-8", "--no-sync", NULL };

        if (run_owner(argv) != 0)
            rb_die("initdb of the throwaway cluster failed; its output is in %s/setup.log", base);
    }
    write_conf();
    {
        char *argv[] = { "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "start", NULL };

        started = 1;            /* even if it fails, it may be half up: stop it on the way out */
        if (run_owner(argv) != 0)
            rb_die("the throwaway cluster did not start; see %s and %s/setup.log", log, base);
    }
    /* the database rhino-bench fills and empties, in a cluster nobody else uses */
    snprintf(conninfo, sizeof(conninfo), "host=%s port=5432 user=postgres dbname=postgres", base);
    conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK)
        rb_die("cannot connect to the throwaway cluster: %s", PQerrorMessage(conn));
    res = PQexec(conn, "CREATE DATABASE rhino_bench");
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rb_die("CREATE DATABASE rhino_bench in the throwaway cluster failed: %s", PQerrorMessage(conn));
    PQclear(res);
    PQfinish(conn);
    snprintf(dsn, dsnlen, "host=%s port=5432 user=postgres dbname=rhino_bench", base);
    starting = 0;
}
