/*
 * rb_rhino.c - the rhino under test.  rhino-bench runs the real daemon, as
 * users run it: a config file, RHINO_DSN in its environment, SIGTERM to stop.
 * Measuring from outside keeps the harness honest: what it times includes
 * everything rhino does, start-up and shutdown included.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "rb_pg.h"
#include "rb_report.h"
#include "rb_rhino.h"
#include "rb_util.h"

#ifndef RB_SBINDIR
#define RB_SBINDIR "/usr/local/sbin"
#endif
#ifndef RB_BENCHDIR
#define RB_BENCHDIR "/usr/local/lib/rhino/bench"
#endif

extern char **environ;

/* room for a PATH_MAX directory and a file name */
#define RB_PATH (PATH_MAX + 256)

static char        rhino_path[RB_PATH];
static char        handlers_path[RB_PATH];
static char        tmpdir[PATH_MAX];
static int         tmpdir_keep;
static int         config_checked;
static int         started_count;
static rb_rhino_t *running;         /* the one rb_rhino_cleanup must stop */

/* ---- finding the binaries ------------------------------------------------ */

static int
is_exec(const char *p)
{
    struct stat st;

    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

static int
is_file(const char *p)
{
    struct stat st;

    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The directory rhino-bench's own executable is in. */
static void
self_dir(const char *argv0, char *out, size_t size)
{
    char    buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    char   *slash;

    if (n > 0) {
        buf[n] = '\0';
    } else if (strchr(argv0, '/') == NULL || realpath(argv0, buf) == NULL) {
        snprintf(out, size, ".");
        return;
    }
    slash = strrchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    snprintf(out, size, "%s", buf);
}

static int
search_path(const char *name, char *out, size_t size)
{
    const char *path = getenv("PATH");
    char       *copy, *save = NULL, *dir;
    int         found = 0;

    if (path == NULL)
        return 0;
    copy = rb_xstrdup(path);
    for (dir = strtok_r(copy, ":", &save); dir != NULL && !found; dir = strtok_r(NULL, ":", &save)) {
        snprintf(out, size, "%s/%s", *dir ? dir : ".", name);
        found = is_exec(out);
    }
    free(copy);
    return found;
}

void
rb_rhino_locate(const char *argv0, const char *rhino_opt, const char *handlers_opt)
{
    char dir[PATH_MAX], cand[RB_PATH];

    self_dir(argv0, dir, sizeof(dir));
    if (rhino_opt != NULL) {
        if (!is_exec(rhino_opt))
            rb_die("--rhino %s: no such executable", rhino_opt);
        snprintf(rhino_path, sizeof(rhino_path), "%s", rhino_opt);
    } else {
        /* the build tree puts rhino beside rhino-bench; an install puts it in ../sbin */
        int found = 0;

        snprintf(cand, sizeof(cand), "%s/rhino", dir);
        if (!(found = is_exec(cand)))
            snprintf(cand, sizeof(cand), "%s/../sbin/rhino", dir);
        if (found || (found = is_exec(cand)))
            snprintf(rhino_path, sizeof(rhino_path), "%s", cand);
        if (!found && is_exec(RB_SBINDIR "/rhino")) {
            snprintf(rhino_path, sizeof(rhino_path), "%s", RB_SBINDIR "/rhino");
            found = 1;
        }
        if (!found && !search_path("rhino", rhino_path, sizeof(rhino_path)))
            rb_die("cannot find the rhino executable (looked in %s, %s/../sbin, %s and $PATH): "
                   "give its path with --rhino", dir, dir, RB_SBINDIR);
    }
    if (handlers_opt != NULL) {
        if (!is_file(handlers_opt))
            rb_die("--handlers %s: no such file", handlers_opt);
        snprintf(handlers_path, sizeof(handlers_path), "%s", handlers_opt);
    } else {
        snprintf(cand, sizeof(cand), "%s/bench/bench_handlers.so", dir);
        if (is_file(cand))
            snprintf(handlers_path, sizeof(handlers_path), "%s", cand);
        else if (is_file(RB_BENCHDIR "/bench_handlers.so"))
            snprintf(handlers_path, sizeof(handlers_path), "%s", RB_BENCHDIR "/bench_handlers.so");
        else
            rb_die("cannot find bench_handlers.so (looked in %s/bench and %s): give its path with --handlers",
                   dir, RB_BENCHDIR);
    }
    /* rhino loads the handlers after a chdir-free start, but a relative path would depend on our cwd */
    if (handlers_path[0] != '/' && realpath(handlers_path, cand) != NULL)
        snprintf(handlers_path, sizeof(handlers_path), "%s", cand);
}

const char *rb_rhino_path(void)     { return rhino_path; }
const char *rb_rhino_handlers(void) { return handlers_path; }

/* ---- the scratch directory ----------------------------------------------- */

const char *
rb_tmpdir(void)
{
    if (tmpdir[0] == '\0') {
        const char *base = getenv("TMPDIR");

        snprintf(tmpdir, sizeof(tmpdir), "%s/rhino-bench-XXXXXX", base && *base ? base : "/tmp");
        if (mkdtemp(tmpdir) == NULL)
            rb_die("cannot create a scratch directory under %s: %s", base && *base ? base : "/tmp",
                   strerror(errno));
    }
    return tmpdir;
}

void
rb_tmpdir_keep(int keep)
{
    tmpdir_keep = keep;
}

/* ---- the config ---------------------------------------------------------- */

typedef struct {
    char section[64];
    char key[64];
    char value[1024];
} rb_line_t;

#define RB_MAX_LINES 64

static void
conf_set(rb_line_t *lines, size_t *n, const char *section, const char *key, const char *value)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(lines[i].section, section) == 0 && strcmp(lines[i].key, key) == 0) {
            snprintf(lines[i].value, sizeof(lines[i].value), "%s", value);
            return;
        }
    }
    if (*n == RB_MAX_LINES)
        rb_die("too many --set options (at most %d config lines)", RB_MAX_LINES);
    snprintf(lines[*n].section, sizeof(lines[*n].section), "%s", section);
    snprintf(lines[*n].key, sizeof(lines[*n].key), "%s", key);
    snprintf(lines[*n].value, sizeof(lines[*n].value), "%s", value);
    (*n)++;
}

/* A port nobody listens on right now (bind to 0, read it back, close). */
static int
free_port(void)
{
    struct sockaddr_in a;
    socklen_t          len = sizeof(a);
    int                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

    if (fd < 0)
        rb_die("socket() failed while looking for a free port: %s", strerror(errno));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0 && getsockname(fd, (struct sockaddr *) &a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    if (port == 0)
        rb_die("cannot find a free TCP port on 127.0.0.1 for rhino's /metrics: %s", strerror(errno));
    return port;
}

static void
write_config(rb_rhino_t *r, const rb_rhino_conf_t *c)
{
    rb_line_t lines[RB_MAX_LINES];
    size_t    n = 0;
    char      v[64];
    FILE     *fp;

    snprintf(v, sizeof(v), "%d", c->workers);
    conf_set(lines, &n, "worker", "processes", v);
    snprintf(v, sizeof(v), "%d", c->batch);
    conf_set(lines, &n, "worker", "batch_size", v);
    conf_set(lines, &n, "worker", "queues", c->queue);
    conf_set(lines, &n, "handlers", "path", handlers_path);
    snprintf(v, sizeof(v), "%g", c->retention);
    conf_set(lines, &n, "retention", "completed", v);
    conf_set(lines, &n, "master", "name", r->node);
    if (r->metrics_port > 0) {
        snprintf(v, sizeof(v), "127.0.0.1:%d", r->metrics_port);
        conf_set(lines, &n, "metrics", "listen", v);
    }
    conf_set(lines, &n, "log", "level", "warning");
    for (size_t i = 0; i < c->nsets; i++) {
        const char *s = c->sets[i], *dot = strchr(s, '.'), *eq = strchr(s, '=');
        char        section[64], key[64];

        /* checked by the option parser; the lengths are bounded there */
        snprintf(section, sizeof(section), "%.*s", (int) (dot - s), s);
        snprintf(key, sizeof(key), "%.*s", (int) (eq - dot - 1), dot + 1);
        conf_set(lines, &n, section, key, eq + 1);
    }

    fp = fopen(r->ini, "w");
    if (fp == NULL)
        rb_die("cannot write %s: %s", r->ini, strerror(errno));
    fprintf(fp, "; written by rhino-bench for one measurement\n"
                "; [database] dsn: not here; rhino gets RHINO_DSN in its environment, so no\n"
                "; password lands on disk\n");
    /* grouped by section, in the order the sections first appear */
    for (size_t i = 0; i < n; i++) {
        int first = 1;

        for (size_t k = 0; k < i; k++)
            if (strcmp(lines[k].section, lines[i].section) == 0)
                first = 0;
        if (!first)
            continue;
        fprintf(fp, "[%s]\n", lines[i].section);
        for (size_t k = i; k < n; k++)
            if (strcmp(lines[k].section, lines[i].section) == 0)
                fprintf(fp, "%s = %s\n", lines[k].key, lines[k].value);
    }
    if (fclose(fp) != 0)
        rb_die("cannot write %s: %s", r->ini, strerror(errno));
}

/* ---- processes ----------------------------------------------------------- */

/*
 * environ plus RHINO_DSN (and the stamp file), less what would make rhino
 * talk to somebody else's systemd.  Built before fork: the child only execs.
 */
static char **
child_env(const rb_rhino_conf_t *c, char **dsn_entry, char **stamp_entry)
{
    size_t n = 0, o = 0;
    char **env;

    while (environ[n] != NULL)
        n++;
    env = rb_xmalloc((n + 3) * sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "RHINO_DSN=", 10) == 0 || strncmp(environ[i], "NOTIFY_SOCKET=", 14) == 0 ||
            strncmp(environ[i], "WATCHDOG_", 9) == 0 || strncmp(environ[i], "RHINO_BENCH_STAMP_FILE=", 23) == 0)
            continue;
        env[o++] = environ[i];
    }
    *dsn_entry = rb_xmalloc(strlen(c->dsn) + 11);
    sprintf(*dsn_entry, "RHINO_DSN=%s", c->dsn);
    env[o++] = *dsn_entry;
    *stamp_entry = NULL;
    if (c->stamp_file != NULL) {
        *stamp_entry = rb_xmalloc(strlen(c->stamp_file) + 24);
        sprintf(*stamp_entry, "RHINO_BENCH_STAMP_FILE=%s", c->stamp_file);
        env[o++] = *stamp_entry;
    }
    env[o] = NULL;
    return env;
}

/* fork + exec argv with env, stdout and stderr appended to logpath; pid, or dies. */
static pid_t
spawn(char *const argv[], char **env, const char *logpath, int pdeathsig)
{
    int   fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int   devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid;

    if (fd < 0 || devnull < 0)
        rb_die("cannot open %s: %s", fd < 0 ? logpath : "/dev/null", strerror(errno));
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        rb_die("fork() failed while starting %s: %s", argv[0], strerror(errno));
    if (pid == 0) {
        /* if rhino-bench dies, rhino drains and stops instead of running on unsupervised */
        if (pdeathsig)
            prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(devnull, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execve(argv[0], argv, env);
        {
            char msg[256];
            int  n = snprintf(msg, sizeof(msg), "rhino-bench: cannot execute %s: %s\n", argv[0], strerror(errno));
            if (write(STDERR_FILENO, msg, (size_t) n) < 0) {
                /* nothing left to tell it to */
            }
        }
        _exit(127);
    }
    close(fd);
    close(devnull);
    return pid;
}

static int
exit_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

/* The last lines of a log, for the message that says why rhino stopped. */
static void
log_tail(const char *path, char *out, size_t size)
{
    FILE *fp = fopen(path, "r");
    char  buf[8192];
    long  end;
    size_t n;
    int   lines = 0;
    char *p;

    out[0] = '\0';
    if (fp == NULL)
        return;
    fseek(fp, 0, SEEK_END);
    end = ftell(fp);
    fseek(fp, end > (long) sizeof(buf) - 1 ? end - (long) sizeof(buf) + 1 : 0, SEEK_SET);
    n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    p = buf + n;
    if (p > buf && p[-1] == '\n')
        p--;                    /* the last line's own newline does not start a line */
    while (p > buf && !(p[-1] == '\n' && ++lines == 20))
        p--;
    snprintf(out, size, "%s", p);
}

/* Whether the file contains needle (a log is small: read whole). */
static int
log_has(const char *path, const char *needle)
{
    FILE    *fp = fopen(path, "r");
    rb_buf_t b = { 0 };
    char     chunk[8192];
    size_t   n;
    int      found;

    if (fp == NULL)
        return 0;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        rb_buf_add(&b, chunk, n);
    fclose(fp);
    found = b.data != NULL && strstr(b.data, needle) != NULL;
    rb_buf_free(&b);
    return found;
}

static void die_with_log(rb_rhino_t *r, const char *what) __attribute__((noreturn));

static void
die_with_log(rb_rhino_t *r, const char *what)
{
    char tail[8192];

    log_tail(r->log, tail, sizeof(tail));
    rb_die("%s; the end of its log (%s):\n%s", what, r->log, tail[0] ? tail : "(empty)\n");
}

void
rb_rhino_fail(rb_rhino_t *r, const char *what)
{
    die_with_log(r, what);
}

/* rhino -t: the config and the handlers checked, once per run. */
static void
check_config(rb_rhino_t *r, char **env)
{
    char *argv[] = { rhino_path, "-t", "-c", r->ini, NULL };
    pid_t pid = spawn(argv, env, r->log, 1);
    int   status;

    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (exit_code(status) != 0) {
        char what[2 * RB_PATH + 128];

        snprintf(what, sizeof(what), "`%s -t` refused the generated config %s (exit %d)", rhino_path, r->ini,
                 exit_code(status));
        die_with_log(r, what);
    }
}

void
rb_rhino_start(rb_rhino_t *r, const rb_rhino_conf_t *c)
{
    char *dsn_entry, *stamp_entry, **env;
    char *argv[] = { rhino_path, "-c", r->ini, NULL };

    if (running != NULL)
        rb_die("internal error: a rhino is already running");
    memset(r, 0, sizeof(*r));
    r->seq = ++started_count;
    snprintf(r->node, sizeof(r->node), "rhino-bench-%ld-%d", (long) getpid(), r->seq);
    snprintf(r->ini, sizeof(r->ini), "%s/rhino-%d.ini", rb_tmpdir(), r->seq);
    snprintf(r->log, sizeof(r->log), "%s/rhino-%d.log", rb_tmpdir(), r->seq);
    r->metrics_port = c->metrics ? free_port() : 0;
    write_config(r, c);
    env = child_env(c, &dsn_entry, &stamp_entry);
    if (!config_checked) {
        check_config(r, env);
        config_checked = 1;
    }
    r->started = rb_mono();
    r->pid = spawn(argv, env, r->log, 1);
    running = r;
    free(env);
    free(dsn_entry);
    free(stamp_entry);
}

void
rb_rhino_alive(rb_rhino_t *r)
{
    int   status;
    pid_t pid = wait4(r->pid, &status, WNOHANG, &r->ru);

    if (pid == r->pid) {
        char what[128];

        r->pid = 0;
        running = NULL;
        r->status = exit_code(status);
        snprintf(what, sizeof(what), "rhino exited by itself (exit %d) during the measurement", r->status);
        die_with_log(r, what);
    }
}

void
rb_rhino_wait_workers(rb_rhino_t *r, PGconn *conn, int workers, double timeout)
{
    const char *params[1] = { r->node };
    double      deadline = rb_mono() + timeout;

    for (;;) {
        rb_rhino_alive(r);
        rb_check_interrupt();
        if (rb_pg_int(conn, RB_SQL_WORKERS_LIVE, params) >= workers)
            return;
        if (rb_mono() > deadline) {
            char what[128];

            snprintf(what, sizeof(what), "rhino's %d worker(s) did not register within %.0f s", workers, timeout);
            die_with_log(r, what);
        }
        rb_sleep(0.01);
    }
}

long long
rb_rhino_metric(rb_rhino_t *r, const char *name)
{
    struct sockaddr_in a;
    static const char  req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    rb_buf_t           resp = { 0 };
    char               chunk[8192];
    int                fd, found = 0;
    long double        sum = 0;
    size_t             nlen = strlen(name);
    double             deadline = rb_mono() + 5;

    if (r->metrics_port <= 0)
        return -1;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t) r->metrics_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *) &a, sizeof(a)) != 0 || write(fd, req, sizeof(req) - 1) != (ssize_t) sizeof(req) - 1) {
        rb_warn("cannot read rhino's /metrics on 127.0.0.1:%d: %s", r->metrics_port, strerror(errno));
        close(fd);
        return -1;
    }
    for (;;) {
        struct pollfd p = { fd, POLLIN, 0 };
        ssize_t       n;

        if (poll(&p, 1, 1000) <= 0 && rb_mono() > deadline)
            break;
        n = read(fd, chunk, sizeof(chunk));
        if (n <= 0)
            break;
        rb_buf_add(&resp, chunk, (size_t) n);
    }
    close(fd);
    /* samples are "name value" or "name{labels} value"; "name_bucket" and the like are other series */
    for (char *line = resp.data; line != NULL && *line; ) {
        char *nl = strchr(line, '\n');

        if (nl != NULL)
            *nl = '\0';
        if (strncmp(line, name, nlen) == 0 && (line[nlen] == ' ' || line[nlen] == '{')) {
            char *sp = strrchr(line, ' ');

            if (sp != NULL) {
                sum += strtold(sp + 1, NULL);
                found = 1;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    rb_buf_free(&resp);
    return found ? (long long) sum : -1;
}

void
rb_rhino_stop(rb_rhino_t *r, double timeout)
{
    double deadline = rb_mono() + timeout;
    int    status;

    if (r->pid <= 0)
        return;
    kill(r->pid, SIGTERM);
    for (;;) {
        pid_t pid = wait4(r->pid, &status, WNOHANG, &r->ru);

        if (pid == r->pid)
            break;
        if (pid < 0 && errno != EINTR)
            rb_die("wait4() on rhino failed: %s", strerror(errno));
        if (rb_mono() > deadline) {
            char what[128];

            kill(r->pid, SIGKILL);
            while (wait4(r->pid, &status, 0, &r->ru) < 0 && errno == EINTR)
                ;
            r->pid = 0;
            running = NULL;
            snprintf(what, sizeof(what), "rhino did not stop within %.0f s of SIGTERM (killed)", timeout);
            die_with_log(r, what);
        }
        rb_sleep(0.005);
    }
    r->pid = 0;
    running = NULL;
    r->status = exit_code(status);
    if (r->status != 0) {
        char what[64];

        snprintf(what, sizeof(what), "rhino exited %d after SIGTERM", r->status);
        die_with_log(r, what);
    }
    /*
     * A sanitizer build reports from inside a worker, which the master
     * simply restarts: the measurement would go on, its numbers wrong.
     */
    if (log_has(r->log, "Sanitizer") || log_has(r->log, "runtime error:"))
        die_with_log(r, "a sanitizer reported from inside rhino");
}

void
rb_rhino_wait_backends_gone(PGconn *conn, double timeout)
{
    double deadline = rb_mono() + timeout;

    while (rb_pg_int(conn, RB_SQL_RHINO_BACKENDS, NULL) > 0) {
        if (rb_mono() > deadline) {
            rb_warn("rhino's connections were still open %.0f s after it exited; "
                    "the commit count may miss their last second", timeout);
            return;
        }
        rb_sleep(0.01);
    }
}

void
rb_rhino_cleanup(void)
{
    if (running != NULL && running->pid > 0) {
        int    status;
        double deadline = rb_mono() + 10;

        kill(running->pid, SIGTERM);
        while (waitpid(running->pid, &status, WNOHANG) == 0 && rb_mono() < deadline)
            rb_sleep(0.01);
        if (rb_mono() >= deadline) {
            kill(running->pid, SIGKILL);
            waitpid(running->pid, &status, 0);
        }
        running->pid = 0;
        running = NULL;
    }
    if (tmpdir[0] != '\0') {
        if (tmpdir_keep)
            fprintf(stderr, "rhino-bench: kept the configs and logs in %s\n", tmpdir);
        else
            rb_rmtree(tmpdir);
    }
}
