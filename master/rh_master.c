/*
 * rh_master.c - the master process: forks the workers and the reaper and
 * supervises them on libev's default loop, nginx's master/worker cycle.
 *
 * The master holds no database connection while it runs (it opens one at
 * start to check the schema and register this node, and closes it before the
 * first fork: libpq connections must not cross a fork) and never runs
 * handler code (handlers are validated in a throwaway child).  So the only
 * things that can kill it are signals.
 *
 * Signals are libev ev_signal watchers: the C handler only records the
 * signal, and the callbacks below run as ordinary code from the loop.
 *
 *   SIGCHLD  a child exited: mark its slot dead in shared memory, poke the
 *            reaper (SIGUSR1) so its jobs are rescued at once, respawn it
 *            (with exponential backoff when it dies young).
 *   SIGTERM  graceful stop: workers finish the job in hand, finalize, release
 *            what they did not start; after [master] shutdown_timeout the rest
 *            are killed and the reaper rescues their jobs (a job whose
 *            handler was cut short is interrupted, not a crash: RH_KILL_STOP);
 *            then the reaper marks the node stopped and everything exits 0.
 *   SIGINT   the same with [master] fast_shutdown_timeout.  A second TERM or
 *            INT kills the workers at once.
 *   stop     a worker stopped (SIGSTOP, a debugger) is marked in shared
 *            memory; the reaper stops renewing its lease, and once the lease
 *            runs out its jobs are rescued.  When it continues, its late
 *            finalizes are stale and rejected.
 *   SIGHUP   re-read the config and take sealed copies of its handler
 *            libraries (rh_pin.c); if both are valid, roll the workers one
 *            at a time (stop one, start its successor with the new config
 *            and the new copies), then the reaper.  If not, log why and keep
 *            running the old ones, copies included: a worker respawned
 *            later loads the accepted copies, never the files on disk.
 *
 * Children notice the master's death through PR_SET_PDEATHSIG (SIGTERM), so
 * a SIGKILLed master leaves no orphans working unsupervised.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <ev.h>
#include <libpq-fe.h>

#include "rh_config.h"
#include "rh_db.h"
#include "rh_loader.h"
#include "rh_http.h"
#include "rh_listen.h"
#include "rh_log.h"
#include "rh_master.h"
#include "rh_metrics.h"
#include "rh_notify.h"
#include "rh_pin.h"
#include "rh_proc.h"
#include "rh_reaper.h"
#include "rh_shm.h"
#include "rh_sql.h"
#include "rh_worker.h"

/*
 * Why the master killed a child itself (rh_proc_t.killed), which decides
 * what its job's report to the reaper says.  A deadline of the job's own
 * (a timeout, a cancel ignored) is the job's doing and counted as a crash;
 * the stop's deadline is rhino's own doing: the job is handed back with
 * no crash counted (RH_STMT_INTERRUPTED), or a long job would be
 * discarded after max_crashes restarts of the service.
 */
typedef enum {
    RH_KILL_NONE = 0,
    RH_KILL_TIMEOUT,            /* its handler passed the job's deadline */
    RH_KILL_CANCEL,             /* its handler still ran [worker] cancel_grace after a cancel */
    RH_KILL_STOP                /* the stop's deadline, or a second stop signal (M.stop_why) */
} rh_kill_t;

typedef struct {
    rh_role_t role;
    int       slot;
    pid_t     pid;              /* 0 = not running */
    int       generation;
    int       epoch;            /* config epoch it was started with */
    double    started;
    double    backoff;          /* next respawn delay if it dies young */
    int       stopping;         /* we sent it SIGTERM */
    rh_kill_t killed;           /* we killed it, and why */
    int       retire;           /* do not respawn (slot removed by a reload) */
    ev_timer  respawn;
    double    died_at;          /* when it last exited (for the systemd watchdog's health check) */
} rh_proc_t;

typedef enum {
    M_RUNNING,
    M_STOPPING,
    M_STOPPING_REAPER
} rh_mstate_t;

static struct {
    rh_config_t    *cfg;
    /*
     * The accepted handler code: sealed copies of cfg's libraries, taken
     * when cfg was accepted.  Every worker started under cfg loads these,
     * whatever the files hold by then.  Replaced only by an accepted reload;
     * the replaced copies are closed at once here, and the kernel frees
     * each one when the last worker that mapped it exits.
     */
    rh_pin_t        pin;
    int64_t         node_id;
    rh_shm_t       *shm;
    pid_t           pid;
    struct ev_loop *loop;
    rh_proc_t       workers[RH_MAX_PROCESSES];
    int             nslots;     /* slots ever used (shm range) */
    int             wake_next;  /* round-robin start of wake_idle() */
    double          idle_seen;  /* rh_mono_now() when a worker was last seen idle */
    rh_proc_t       reaper;
    int             epoch;
    int             rolling;
    rh_mstate_t     state;
    int             exit_code;
    char            stop_why[80];   /* why the stop kills workers, for their jobs' last_error */
    ev_signal       sig_term, sig_int, sig_hup;
    ev_child        child;
    ev_timer        deadline;
    ev_timer        watchdog;   /* handler deadlines; systemd notifications */
    ev_timer        support;    /* starts the reaper and the LISTEN connection: start_support() */
    int             support_started;
    int             stop_respawns;  /* reapers started since the stop began: a few, never a crash loop */
    /*
     * Every time below is rh_mono_now(), never ev_now(): libev's ev_now()
     * follows the wall clock (only its timers run on the monotonic one),
     * and a clock stepped back would stop the watchdog pings and the
     * STATUS= lines for as long as the step (then systemd kills us).
     */
    double          started;    /* when the workers were first spawned */
    int             ready_sent; /* READY=1 sent since the start or the last RELOADING=1 */
    /*
     * A reload's handler check in flight (on_hup): the checking child, the
     * config it checks, its shared page (check_fork) and its time limit.
     * The loop goes on meanwhile; the child's exit arrives in on_child.
     */
    pid_t           check_pid;
    rh_config_t    *check_cfg;
    rh_pin_t        check_pin;  /* check_cfg's copies: M.pin if the reload is accepted */
    char           *check_note;
    int             check_timed_out;
    ev_timer        check_timer;
    double          status_at, last_ping;
    uint64_t        status_finished;
    char            status[256];
} M;

static void spawn(rh_proc_t *p);
static void wake_idle(const char *queue);
static void start_support(void);
static void roll_next(void);
static void check_done(int status);

/* ---------------------------------------------------------------------- */

/*
 * In a freshly forked child, whatever it goes on to do: close its copies of
 * the sockets the master serves on, the metrics endpoint's (listening and
 * accepted) and the LISTEN connection's.  The child never uses them, but
 * its copy kept a scraper's connection open after the master had closed
 * its side, and a listening socket the master had closed (a reload moving
 * [metrics] listen) still accepting, for as long as the child lived.
 */
static void
drop_master_sockets(void)
{
    rh_http_child();
    rh_listen_child();
}

/*
 * In a freshly forked child: stop the master's watchers (so that libev lets
 * the child's own loop take the same signals), drop the master's loop, and
 * restore a plain signal state.
 */
static void
child_init(void)
{
    sigset_t all;

    if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != M.pid)
        _exit(RH_EXIT_ERROR);   /* the master is already gone */
    ev_signal_stop(M.loop, &M.sig_term);
    ev_signal_stop(M.loop, &M.sig_int);
    ev_signal_stop(M.loop, &M.sig_hup);
    ev_child_stop(M.loop, &M.child);
    ev_timer_stop(M.loop, &M.watchdog);
    drop_master_sockets();
    ev_loop_destroy(M.loop);
    M.loop = NULL;
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    /* a reload's copies under check are not this child's to load, nor to keep open */
    rh_pin_release(&M.check_pin);
    /*
     * SIGUSR1 stays ignored (inherited from the master, so from the fork on)
     * until the child's own loop takes it: the master pokes the reaper with
     * SIGUSR1 whenever a worker exits, and on a stop in the first moments
     * that came before the reaper's ev_signal was set; its default action
     * killed the reaper, which is not restarted while stopping (no last
     * pass, the node never marked stopped).  A lost poke costs nothing: the
     * reaper starts with a pass and the worker with a claim.
     *
     * SIGTERM and SIGINT stay blocked, not lost, until the child's handlers
     * for them are in place (rh_worker_main, rh_reaper_main unblock them):
     * at their default action, a stop in the first moments killed a worker
     * still loading its handlers (logged as an error) and the reaper sent
     * its last SIGTERM before it could take it (no last pass).
     */
    sigemptyset(&all);
    sigaddset(&all, SIGTERM);
    sigaddset(&all, SIGINT);
    sigprocmask(SIG_SETMASK, &all, NULL);
}

/*
 * The handler check: a child loads the sealed copies of the config's
 * handler libraries (running their constructors) and exits 0 if they are
 * valid.  The copies are taken before, in the master, and the workers load
 * those same copies later: what runs is exactly what was checked, however
 * the files change meanwhile.  Its time is bounded by
 * [handlers] load_timeout: a constructor that blocks (a DNS lookup, a lock,
 * a sleep) must not hold the master, so the child is killed after that long
 * and the config rejected.  The child writes the path it is loading into a
 * shared page before each dlopen(), so that the error can name the library.
 */
#define RH_CHECK_NOTE 4096

static char *check_note;        /* in the checking child: its shared page */

static void
check_note_loading(const char *path)
{
    snprintf(check_note, RH_CHECK_NOTE, "%s", path);
}

/* Fork the child checking pin; returns its pid, or -1 after logging.  *note gets its page (munmap it). */
static pid_t
check_fork(const rh_pin_t *pin, char **note)
{
    pid_t pid;
    char *page = mmap(NULL, RH_CHECK_NOTE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (page == MAP_FAILED) {
        rh_log_error("mmap() failed while checking handlers: %s", strerror(errno));
        return -1;
    }
    page[0] = '\0';
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        rh_log_error("fork() failed while checking handlers: %s", strerror(errno));
        munmap(page, RH_CHECK_NOTE);
        return -1;
    }
    if (pid == 0) {
        rh_registry_t reg;
        char          err[1024];

        /* killed with the master, not left loading on its own */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /*
         * A reload's check lives up to [handlers] load_timeout beside the
         * running master (at the start nothing is open yet).  It keeps the
         * master's loop as it was, never running it: no child_init.
         */
        drop_master_sockets();
        rh_log_set_role("check");
        check_note = page;
        rh_loader_on_load = check_note_loading;
        if (rh_loader_load_pinned(&reg, pin, err, sizeof(err)) < 0) {
            rh_log_error("%s", err);
            _exit(RH_EXIT_FATAL);
        }
        _exit(RH_EXIT_OK);
    }
    *note = page;
    return pid;
}

/* The checking child ended with status; timed_out: we killed it.  Returns 0 if the handlers are valid. */
static int
check_result(const rh_config_t *cfg, int status, int timed_out, const char *note)
{
    if (timed_out) {
        rh_log_error("loading the handlers took longer than %.1f s ([handlers] load_timeout): %s%s "
                     "did not finish loading (a constructor that blocks?); the checking process was killed",
                     cfg->handler_load_timeout, note[0] ? "handler " : "", note[0] ? note : "[handlers] path");
        return -1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFSIGNALED(status))
        rh_log_error("loading the handlers killed the checking process with signal %d "
                     "(a constructor in a handler .so crashed?)", WTERMSIG(status));
    return -1;
}

/*
 * At start and for rhino -t, before the master's loop exists: take the
 * copies, and wait for their check here, polling, for at most [handlers]
 * load_timeout.  pin (may be NULL) gets the checked copies.
 */
int
rh_master_check_handlers(const rh_config_t *cfg, rh_pin_t *pin)
{
    char     *note = NULL, err[1024];
    rh_pin_t  taken;
    pid_t     pid;
    double    deadline = rh_mono_now() + cfg->handler_load_timeout;
    int       status = 0, timed_out = 0, rc;

    if (rh_pin_take(&taken, cfg->handler_paths, cfg->nhandler_paths, err, sizeof(err)) < 0) {
        rh_log_error("%s", err);
        return -1;
    }
    if ((pid = check_fork(&taken, &note)) < 0) {
        rh_pin_release(&taken);
        return -1;
    }
    for (;;) {
        pid_t r = waitpid(pid, &status, timed_out ? 0 : WNOHANG);

        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            rh_log_error("waitpid() failed while checking handlers: %s", strerror(errno));
            munmap(note, RH_CHECK_NOTE);
            rh_pin_release(&taken);
            return -1;
        }
        if (r == 0 && rh_mono_now() >= deadline) {
            kill(pid, SIGKILL);
            timed_out = 1;
        } else if (r == 0) {
            usleep(10 * 1000);
        }
    }
    rc = check_result(cfg, status, timed_out, note);
    munmap(note, RH_CHECK_NOTE);
    if (rc == 0 && pin != NULL)
        *pin = taken;
    else
        rh_pin_release(&taken);
    return rc;
}

static const char *
proc_name(const rh_proc_t *p, char *buf, size_t len)
{
    if (p->role == RH_ROLE_REAPER)
        snprintf(buf, len, "reaper");
    else
        snprintf(buf, len, "worker.%d", p->slot);
    return buf;
}

static void
spawn(rh_proc_t *p)
{
    pid_t    pid;
    char     name[32];
    sigset_t stop, saved;

    if (p->role == RH_ROLE_WORKER) {
        /* publish the generation before fork: see rh_shm.h */
        rh_shm_store(&M.shm->slot[p->slot].ready, 0);
        rh_shm_store(&M.shm->slot[p->slot].idle, 0);     /* no SIGUSR1 before its handler is set */
        rh_shm_store(&M.shm->slot[p->slot].cancel_job, (int64_t) 0);
        p->generation++;
        rh_shm_store(&M.shm->slot[p->slot].generation, p->generation);
        rh_shm_store(&M.shm->slot[p->slot].min_live, p->generation);
    } else {
        rh_shm_store(&M.shm->reaper_ready, 0);
    }
    fflush(NULL);
    /*
     * SIGTERM and SIGINT blocked across the fork, so that the child holds
     * them from its first instruction (child_init keeps them blocked until
     * its own handlers are set): a SIGTERM the master sends at once, as
     * stop_reaper does to a reaper forked a moment before, was otherwise
     * lost in the child's copy of the master's loop or killed it at the
     * default action.  In the master they wait the few microseconds of
     * the fork and are taken by its loop as before.
     */
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, &saved);
    pid = fork();
    if (pid != 0)
        sigprocmask(SIG_SETMASK, &saved, NULL);
    if (pid < 0) {
        rh_log_error("fork() failed while spawning %s: %s; retrying in 1 s",
                     proc_name(p, name, sizeof(name)), strerror(errno));
        ev_timer_set(&p->respawn, 1.0, 0);
        ev_timer_start(M.loop, &p->respawn);
        return;
    }
    if (pid == 0) {
        child_init();
        if (p->role == RH_ROLE_WORKER)
            rh_worker_main(M.cfg, &M.pin, p->slot, p->generation, M.node_id, M.shm);
        rh_pin_release(&M.pin);         /* the reaper runs no handler code */
        rh_reaper_main(M.cfg, M.node_id, M.shm);
    }
    p->pid = pid;
    p->started = rh_mono_now();
    p->epoch = M.epoch;
    p->stopping = 0;
    p->killed = RH_KILL_NONE;
    if (p->role == RH_ROLE_WORKER)
        rh_shm_store(&M.shm->slot[p->slot].pid, (int) pid);
    rh_log_debug("started %s, pid %d", proc_name(p, name, sizeof(name)), (int) pid);
}

/*
 * The reaper and the LISTEN connection start once every worker is ready,
 * or a second after the workers at the latest.  Why: a new connection
 * costs its server backend's start-up (about 15 ms of CPU on a two-core
 * VM), and five started at once made the workers' first claim wait behind
 * the reaper's and the listener's.  Neither is needed in that first
 * moment: a ready worker claims at once without being woken, and leases
 * last [worker] lease.  rhino-bench 100k drains alternated with starting
 * all five together: start-up (exec to the first claim) 0.099-0.125 s
 * against 0.125-0.155 s.  READY=1 still waits for the reaper (notify_tick).
 */
static void
start_support(void)
{
    if (M.support_started)
        return;
    M.support_started = 1;
    ev_timer_stop(M.loop, &M.support);
    rh_listen_start(M.loop, M.cfg, M.node_id, wake_idle);
    spawn(&M.reaper);
}

static void
on_support(struct ev_loop *loop, ev_timer *w, int revents)
{
    int ready = 0;

    for (int i = 0; i < M.cfg->processes; i++)
        if (M.workers[i].pid && rh_shm_load(&M.shm->slot[i].ready))
            ready++;
    if (ready == M.cfg->processes || rh_mono_now() - M.started >= 1.0)
        start_support();
}

static void
on_respawn(struct ev_loop *loop, ev_timer *w, int revents)
{
    rh_proc_t *p = w->data;

    if (M.state == M_RUNNING && p->pid == 0 && !p->retire)
        spawn(p);
}

static int
workers_alive(void)
{
    int n = 0;

    for (int i = 0; i < M.nslots; i++)
        if (M.workers[i].pid)
            n++;
    return n;
}

static void
stop_reaper(void)
{
    M.state = M_STOPPING_REAPER;
    if (M.reaper.pid == 0) {
        ev_break(M.loop, EVBREAK_ALL);
        return;
    }
    rh_shm_store(&M.shm->reaper_last, 1);
    kill(M.reaper.pid, SIGTERM);
    /* the reaper's last pass is short; do not wait on a hung database forever */
    ev_timer_stop(M.loop, &M.deadline);
    ev_timer_set(&M.deadline, 10.0, 0);
    ev_timer_start(M.loop, &M.deadline);
}

/*
 * The stop's deadline (or a second stop signal): kill the workers still
 * draining.  Each is marked as killed by the stop, unless the watchdog
 * already killed it for its job's own deadline, so that on_child reports
 * its job as interrupted, not as a crash.
 */
static void
kill_workers_for_stop(void)
{
    for (int i = 0; i < M.nslots; i++) {
        rh_proc_t *p = &M.workers[i];

        if (p->pid == 0)
            continue;
        if (p->killed == RH_KILL_NONE)
            p->killed = RH_KILL_STOP;
        kill(p->pid, SIGKILL);
    }
}

static void
begin_shutdown(int fast, int code)
{
    double timeout = fast ? M.cfg->fast_shutdown_timeout : M.cfg->shutdown_timeout;

    if (code > M.exit_code)
        M.exit_code = code;
    if (M.state != M_RUNNING) {
        /* a second request: no more waiting */
        if (M.state == M_STOPPING) {
            rh_log_warning("stop requested again: killing %d worker(s) now", workers_alive());
            snprintf(M.stop_why, sizeof(M.stop_why), "rhino stopped at once (a second stop signal)");
            kill_workers_for_stop();
        }
        return;
    }
    start_support();            /* a stop in the first second: the reaper still hands back and closes */
    M.state = M_STOPPING;
    snprintf(M.stop_why, sizeof(M.stop_why), "rhino stopped (%s %g s passed)",
             fast ? "fast_shutdown_timeout" : "shutdown_timeout", timeout);
    if (M.check_pid)
        kill(M.check_pid, SIGKILL);     /* a reload being checked: dropped (check_done) */
    rh_notify("STOPPING=1\nSTATUS=stopping: draining %d worker(s)", workers_alive());
    rh_log_info("%s stop: draining %d worker(s), deadline %.1f s", fast ? "fast" : "graceful",
                workers_alive(), timeout);
    for (int i = 0; i < M.nslots; i++) {
        rh_proc_t *p = &M.workers[i];
        ev_timer_stop(M.loop, &p->respawn);
        if (p->pid) {
            kill(p->pid, SIGTERM);
            p->stopping = 1;
        }
    }
    ev_timer_stop(M.loop, &M.reaper.respawn);
    if (workers_alive() == 0) {
        stop_reaper();
        return;
    }
    ev_timer_set(&M.deadline, timeout, 0);
    ev_timer_start(M.loop, &M.deadline);
}

static void
on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (M.state == M_STOPPING) {
        rh_log_warning("shutdown deadline passed: killing %d worker(s); the reaper hands their jobs back",
                       workers_alive());
        kill_workers_for_stop();
    } else if (M.state == M_STOPPING_REAPER && M.reaper.pid) {
        rh_log_warning("the reaper did not stop in time; killing it");
        kill(M.reaper.pid, SIGKILL);
    }
}

static void
on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    rh_proc_t *p = NULL;
    char       name[32], how[64];
    int        st = w->rstatus, code, stopped_by_us, deadline_kill;
    double     now = rh_mono_now();

    if (M.check_pid != 0 && w->rpid == M.check_pid) {
        if (!WIFSTOPPED(st) && !WIFCONTINUED(st))
            check_done(st);
        return;
    }
    if (M.reaper.pid == w->rpid)
        p = &M.reaper;
    for (int i = 0; p == NULL && i < M.nslots; i++)
        if (M.workers[i].pid == w->rpid)
            p = &M.workers[i];
    if (p == NULL)
        return;                 /* a handler checker, reaped elsewhere */

    if (WIFSTOPPED(st) || WIFCONTINUED(st)) {
        int stopped = WIFSTOPPED(st);
        if (p->role == RH_ROLE_WORKER) {
            rh_shm_store(&M.shm->slot[p->slot].stopped, stopped);
            rh_log_warning("%s (pid %d) %s; %s", proc_name(p, name, sizeof(name)), (int) w->rpid,
                           stopped ? "was stopped" : "continues",
                           stopped ? "its lease is no longer renewed" : "its lease is renewed again");
        }
        return;
    }

    code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (WIFEXITED(st))
        snprintf(how, sizeof(how), "exited with code %d", WEXITSTATUS(st));
    else
        snprintf(how, sizeof(how), "was killed by signal %d%s", WTERMSIG(st),
                 WCOREDUMP(st) ? " (core dumped)" : "");
    p->pid = 0;
    p->died_at = now;
    /* killed by the stop's SIGKILL, not by a signal of its own a moment before it (a real crash) */
    stopped_by_us = p->killed == RH_KILL_STOP && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
    deadline_kill = p->killed == RH_KILL_TIMEOUT || p->killed == RH_KILL_CANCEL;
    if (p->role == RH_ROLE_WORKER) {
        rh_shm_slot_t *sl = &M.shm->slot[p->slot];
        int64_t        job = rh_shm_load(&sl->job_id);

        /*
         * It died inside a handler: report that job, so that the crash is
         * counted apart from handler errors, or, killed by the stop, the
         * job is handed back as interrupted.  The report is published
         * before min_live, which the reaper reads first (see rh_reaper.c).
         */
        if (job != 0) {
            uint32_t         h = rh_shm_load(&M.shm->report_head);
            rh_shm_report_t *r = &M.shm->reports[h % RH_SHM_REPORTS];

            if (h - rh_shm_load(&M.shm->report_tail) < RH_SHM_REPORTS) {
                r->job_id = job;
                r->attempt = rh_shm_load(&sl->job_attempt);
                r->interrupted = stopped_by_us;
                if (stopped_by_us)
                    snprintf(r->why, sizeof(r->why), "interrupted: %s while the handler ran", M.stop_why);
                else if (p->killed == RH_KILL_CANCEL)
                    snprintf(r->why, sizeof(r->why), "the handler did not stop within [worker] cancel_grace");
                else if (p->killed == RH_KILL_TIMEOUT)
                    snprintf(r->why, sizeof(r->why), "timeout: the handler passed its deadline");
                else
                    snprintf(r->why, sizeof(r->why), "the worker %s while the handler ran", how);
                rh_shm_store(&M.shm->report_head, h + 1);
            } else {
                rh_log_error("crash report queue full; job %" PRId64 " is rescued without a crash count", job);
            }
            rh_log_warning("job %" PRId64 " (attempt %d) %s", job, rh_shm_load(&sl->job_attempt),
                           stopped_by_us ? "was interrupted by the stop; it runs again"
                           : deadline_kill ? "timed out" : "crashed its worker");
            if (!stopped_by_us && !deadline_kill)
                __atomic_fetch_add(&M.shm->metrics.crashes, (uint64_t) 1, __ATOMIC_RELAXED);
            rh_shm_store(&sl->job_id, (int64_t) 0);
            rh_shm_store_d(&sl->deadline, 0.0);
        }
        rh_shm_store(&sl->stopped, 0);
        rh_shm_store(&M.shm->slot[p->slot].pid, 0);
        rh_shm_store(&M.shm->slot[p->slot].min_live, p->generation + 1);
        /* its running jobs: rescued by the reaper's next pass, which is now */
        if (M.reaper.pid)
            kill(M.reaper.pid, SIGUSR1);
    }
    if (code == 0 && (p->stopping || M.state != M_RUNNING))
        rh_log_info("%s (pid %d) %s", proc_name(p, name, sizeof(name)), (int) w->rpid, how);
    else if (stopped_by_us)
        rh_log_warning("%s (pid %d) %s: %s", proc_name(p, name, sizeof(name)), (int) w->rpid, how, M.stop_why);
    else
        rh_log_error("%s (pid %d) %s", proc_name(p, name, sizeof(name)), (int) w->rpid, how);

    if (M.state == M_STOPPING) {
        if (workers_alive() == 0)
            stop_reaper();
        else if (p == &M.reaper && code != RH_EXIT_FATAL && M.stop_respawns++ < 10)
            spawn(p);       /* rolled, or died: the draining workers' leases still need renewing */
        return;
    }
    if (M.state == M_STOPPING_REAPER) {
        if (p == &M.reaper)
            ev_break(loop, EVBREAK_ALL);
        return;
    }
    if (code == RH_EXIT_FATAL) {
        rh_log_error("%s hit an error that a restart cannot fix; stopping rhino", name);
        begin_shutdown(1, 1);
        return;
    }
    if (p->retire) {
        p->retire = 0;
        return;
    }
    if (p->stopping) {
        /* stopped by us for a roll: its successor starts now, with the new config */
        spawn(p);
        if (M.rolling)
            roll_next();
        return;
    }
    /*
     * Died on its own: respawn at once, unless it keeps dying before it
     * ever got to work (a crash loop: a handler whose constructor crashes,
     * a reaper that cannot start), then slower and slower, up to 10 s
     * apart.  A worker killed while working is replaced at once; a job
     * that keeps killing workers is the reaper's business (max_crashes).
     */
    if (p->role == RH_ROLE_WORKER ? !rh_shm_load(&M.shm->slot[p->slot].ready) : now - p->started < 2) {
        p->backoff = p->backoff ? p->backoff * 2 : 0.05;
        if (p->backoff > 10)
            p->backoff = 10;
    } else {
        p->backoff = 0;
    }
    __atomic_fetch_add(&M.shm->metrics.restarts, (uint64_t) 1, __ATOMIC_RELAXED);
    if (p->backoff == 0) {
        spawn(p);
    } else {
        rh_log_warning("%s died %.1f s after start; restarting it in %.1f s", name, now - p->started,
                       p->backoff);
        ev_timer_set(&p->respawn, p->backoff, 0);
        ev_timer_start(loop, &p->respawn);
    }
}

/* ---------------------------------------------------------------------- */
/* reload                                                                 */

/* Stop the next process started under an older config; its exit starts its successor. */
static void
roll_next(void)
{
    char name[32];

    for (int i = 0; i < M.nslots; i++) {
        rh_proc_t *p = &M.workers[i];
        if (p->pid && p->epoch < M.epoch && !p->retire) {
            if (!p->stopping) {
                rh_log_info("rolling %s (pid %d)", proc_name(p, name, sizeof(name)), (int) p->pid);
                p->stopping = 1;
                kill(p->pid, SIGTERM);
            }
            return;             /* one at a time */
        }
    }
    if (M.reaper.pid && M.reaper.epoch < M.epoch) {
        if (!M.reaper.stopping) {
            M.reaper.stopping = 1;
            kill(M.reaper.pid, SIGTERM);
        }
        return;
    }
    M.rolling = 0;
    rh_log_info("reload done: %d worker(s) on the new configuration", workers_alive());
}

/* ncfg passed every check: make it the running config and roll the workers onto it. */
static void
reload_apply(rh_config_t *ncfg)
{
    rh_config_t *old;
    int          oldn;

    if (ncfg->dsn && M.cfg->dsn && strcmp(ncfg->dsn, M.cfg->dsn) != 0)
        rh_log_warning("[database] dsn changed: new workers use it; the node stays registered where it was");
    old = M.cfg;
    oldn = old->processes;
    M.cfg = ncfg;
    rh_log_level = ncfg->log_level;
    rh_log_format = ncfg->log_format;
    rh_log_set_syslog(ncfg->log_syslog);
    rh_config_free(old);
    free(old);
    M.epoch++;
    rh_http_reconfigure(M.cfg->metrics_listen);
    rh_listen_reconfigure(M.cfg);

    /* fewer processes: retire the surplus slots; more: start the new ones */
    for (int i = M.cfg->processes; i < oldn; i++) {
        rh_proc_t *p = &M.workers[i];
        ev_timer_stop(M.loop, &p->respawn);
        if (p->pid) {
            p->retire = 1;
            p->stopping = 1;
            kill(p->pid, SIGTERM);
        }
    }
    for (int i = oldn; i < M.cfg->processes; i++) {
        rh_proc_t *p = &M.workers[i];
        p->retire = 0;
        if (i >= M.nslots) {
            M.nslots = i + 1;
            rh_shm_store(&M.shm->nslots, M.nslots);
        }
        if (p->pid == 0)
            spawn(p);
    }
    M.rolling = 1;
    roll_next();
}

/* The reload's checking child exited (status as waitpid's): apply its config or drop it. */
static void
check_done(int status)
{
    rh_config_t *ncfg = M.check_cfg;
    int          rc;

    ev_timer_stop(M.loop, &M.check_timer);
    /* a stop killed the check (begin_shutdown): no verdict to report, the reload is simply dropped */
    rc = M.state != M_RUNNING ? -1 : check_result(ncfg, status, M.check_timed_out, M.check_note);
    munmap(M.check_note, RH_CHECK_NOTE);
    M.check_pid = 0;
    M.check_cfg = NULL;
    M.check_note = NULL;
    M.check_timed_out = 0;
    if (rc < 0 || M.state != M_RUNNING) {
        if (M.state != M_RUNNING)
            rh_log_info("reload dropped: rhino is stopping");
        else
            rh_log_error("reload failed (handlers above), keeping the running configuration");
        rh_pin_release(&M.check_pin);
        rh_config_free(ncfg);
        free(ncfg);
        return;
    }
    /*
     * The checked copies become the running code.  The old ones are closed
     * here: the old workers mapped theirs when they loaded them, which keeps
     * them for as long as those workers live, and no worker started from
     * now on loads them.
     */
    rh_pin_release(&M.pin);
    M.pin = M.check_pin;
    memset(&M.check_pin, 0, sizeof(M.check_pin));
    reload_apply(ncfg);
}

/* The reload's check passed [handlers] load_timeout: kill it; its exit (check_done) rejects the reload. */
static void
on_check_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (M.check_pid == 0)
        return;
    M.check_timed_out = 1;
    kill(M.check_pid, SIGKILL);
}

/*
 * SIGHUP: read the file; if it parses, check its handlers in a child
 * without waiting for it (check_done goes on when the child exits), so that
 * signals, respawns and deadlines are served while a handler's constructor
 * runs.
 */
static void
on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    rh_config_t *ncfg;
    char         err[1024];

    if (M.state != M_RUNNING)
        return;
    if (M.check_pid != 0) {
        rh_log_warning("SIGHUP: the last reload's handlers are still being checked; send SIGHUP again "
                       "once it is done");
        return;
    }
    rh_log_info("SIGHUP: reloading %s", M.cfg->path);
    /* READY=1 follows from notify_tick once the roll is done (or at once if the reload fails) */
    rh_notify_reloading();
    M.ready_sent = 0;
    ncfg = calloc(1, sizeof(*ncfg));
    if (ncfg == NULL)
        return;
    if (rh_config_load(M.cfg->path, ncfg, err, sizeof(err)) < 0) {
        rh_log_error("reload failed, keeping the running configuration: %s", err);
        rh_config_free(ncfg);
        free(ncfg);
        return;
    }
    /* copied before the check, so that what is checked is what the workers run */
    if (rh_pin_take(&M.check_pin, ncfg->handler_paths, ncfg->nhandler_paths, err, sizeof(err)) < 0) {
        rh_log_error("reload failed, keeping the running configuration: %s", err);
        rh_config_free(ncfg);
        free(ncfg);
        return;
    }
    if ((M.check_pid = check_fork(&M.check_pin, &M.check_note)) < 0) {
        M.check_pid = 0;
        rh_log_error("reload failed (handlers above), keeping the running configuration");
        rh_pin_release(&M.check_pin);
        rh_config_free(ncfg);
        free(ncfg);
        return;
    }
    M.check_cfg = ncfg;
    M.check_timed_out = 0;
    ev_timer_set(&M.check_timer, ncfg->handler_load_timeout, 0);
    ev_timer_start(loop, &M.check_timer);
}

/* ---------------------------------------------------------------------- */
/* systemd and metrics                                                    */

/* What GET /metrics and STATUS= report about the children. */
static void
metrics_gauges(rh_metrics_gauges_t *g)
{
    g->workers_configured = M.cfg->processes;
    g->workers_alive = workers_alive();
    g->workers_ready = 0;
    for (int i = 0; i < M.nslots; i++)
        if (M.workers[i].pid && rh_shm_load(&M.shm->slot[i].ready))
            g->workers_ready++;
    g->reaper_up = M.reaper.pid != 0 && rh_shm_load(&M.shm->reaper_ready);
}

/*
 * A child is healthy while it runs, or while it is dead for no longer than
 * the respawn backoff it is waiting out (plus a second of slack).  A slot
 * dead for longer means the supervision itself is stuck: then the
 * systemd watchdog pings stop, and systemd restarts us.  The database
 * being down is not a reason: children reconnect on their own.
 */
static int
proc_healthy(const rh_proc_t *p, double now)
{
    return p->pid != 0 || p->retire || now - p->died_at <= p->backoff + 1.0;
}

/*
 * Every 0.1 s from the loop: READY=1 once every configured worker and the
 * reaper are up and connected (after the start, and again after a reload's
 * roll), STATUS= once a second, WATCHDOG=1 at half the watchdog interval
 * while all slots are healthy.  Only the loop sends pings, so a master
 * stuck anywhere stops them.
 */
static void
notify_tick(void)
{
    double              now = rh_mono_now();
    rh_metrics_gauges_t g;
    int                 healthy = 1;
    double              wd = rh_notify_watchdog_interval();

    metrics_gauges(&g);
    if (now - M.status_at >= 1.0) {
        uint64_t fin = rh_metrics_finished();
        double   rate = M.status_at > 0 ? (double) (fin - M.status_finished) / (now - M.status_at) : 0;

        snprintf(M.status, sizeof(M.status), "%sworkers %d/%d, %.0f jobs/s, %" PRIu64 " restarts%s",
                 M.state != M_RUNNING ? "stopping: " : M.rolling || M.check_pid ? "reloading: " : "",
                 g.workers_ready, g.workers_configured, rate, rh_shm_load(&M.shm->metrics.restarts),
                 g.reaper_up ? "" : ", reaper not connected");
        M.status_at = now;
        M.status_finished = fin;
        if (M.ready_sent || M.state != M_RUNNING)
            rh_notify("STATUS=%s", M.status);
    }
    if (M.state == M_RUNNING && !M.ready_sent && !M.rolling && !M.check_pid && g.reaper_up &&
        g.workers_ready == g.workers_configured) {
        M.ready_sent = 1;
        snprintf(M.status, sizeof(M.status), "workers %d/%d, 0 jobs/s, %" PRIu64 " restarts",
                 g.workers_ready, g.workers_configured, rh_shm_load(&M.shm->metrics.restarts));
        rh_notify("READY=1\nSTATUS=%s", M.status);
        rh_log_info("ready: %d worker(s) and the reaper connected", g.workers_ready);
    }
    if (wd <= 0 || now - M.last_ping < wd)
        return;
    if (M.state == M_RUNNING) {
        healthy = !M.support_started || proc_healthy(&M.reaper, now);
        for (int i = 0; i < M.cfg->processes && healthy; i++)
            healthy = proc_healthy(&M.workers[i], now);
    }
    if (healthy) {
        M.last_ping = now;
        rh_notify("WATCHDOG=1");
    }
}

/* Kill workers whose handler passed its deadline (the reaper counts the job as timed out). */
static void
on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    double now = rh_mono_now();
    char   name[32];
    int    idle = 0;

    for (int i = 0; i < M.nslots; i++) {
        rh_proc_t     *p = &M.workers[i];
        rh_shm_slot_t *sl = &M.shm->slot[i];
        double         d;
        int64_t        job;

        if (p->pid > 0 && !p->stopping && rh_shm_load(&sl->idle))
            idle = 1;
        if (p->pid == 0 || p->killed)
            continue;
        /*
         * The job, its deadline, the job again: the worker publishes the
         * deadline before the id and clears the id first, so the same id on
         * both sides means the deadline read is that job's.  Read once, a job
         * that ended past its deadline and the next one that began between
         * the two loads had the next one killed and charged with a timeout.
         */
        job = rh_shm_load(&sl->job_id);
        d = rh_shm_load_d(&sl->deadline);
        if (rh_shm_load(&sl->job_id) != job)
            continue;           /* a job ended meanwhile: look again at the next tick */
        if (rh_shm_load(&sl->cancel_job) != 0 && rh_shm_load(&sl->cancel_job) == rh_shm_load(&sl->job_id) &&
            now - rh_shm_load_d(&sl->cancel_at) > M.cfg->cancel_grace) {
            /* reported as a crash; the crash statement ends a cancelled job as cancelled */
            rh_log_warning("%s: job %" PRId64 " was cancelled and its handler still runs after %.0f s "
                           "([worker] cancel_grace); killing the worker",
                           proc_name(p, name, sizeof(name)), rh_shm_load(&sl->job_id), M.cfg->cancel_grace);
            p->killed = RH_KILL_CANCEL;
            kill(p->pid, SIGKILL);
            continue;
        }
        if (d > 0 && now > d && job != 0) {
            rh_log_error("%s: job %" PRId64 " (attempt %d) passed its deadline by %.1f s; killing the worker",
                         proc_name(p, name, sizeof(name)), job,
                         rh_shm_load(&sl->job_attempt), now - d);
            p->killed = RH_KILL_TIMEOUT;
            __atomic_fetch_add(&M.shm->metrics.timeouts, (uint64_t) 1, __ATOMIC_RELAXED);
            kill(p->pid, SIGKILL);
        }
    }
    /*
     * rhino.nodes.idle turns false only after a full second without an idle
     * worker: producers stop notifying under sustained load, but a trickle
     * that keeps the workers busy for a moment now and then still wakes
     * them (an enqueue that does not notify waits for a poll).
     */
    if (idle)
        M.idle_seen = now;
    rh_listen_idle(M.state == M_RUNNING && now - M.idle_seen < 1.0);
    notify_tick();
}

static void
on_term(struct ev_loop *loop, ev_signal *w, int revents)
{
    begin_shutdown(w->signum == SIGINT, 0);
}

/* ---------------------------------------------------------------------- */

/* Register this master as a node; the connection is closed before any fork. */
static int
register_node(void)
{
    char        err[1024], host[256], pid[16], lease[32];
    const char *name = M.cfg->node_name;
    const char *p[3];
    PGconn     *conn;
    PGresult   *res;

    conn = rh_db_connect(M.cfg->dsn, "master", err, sizeof(err));
    if (conn == NULL) {
        rh_log_error("%s (set [database] dsn or RHINO_DSN)", err);
        return -1;
    }
    if (rh_db_check_schema(conn, err, sizeof(err)) < 0) {
        rh_log_error("%s", err);
        PQfinish(conn);
        return -1;
    }
    if (name == NULL || *name == '\0') {
        if (gethostname(host, sizeof(host)) < 0)
            snprintf(host, sizeof(host), "unknown");
        host[sizeof(host) - 1] = '\0';
        name = host;
    }
    snprintf(pid, sizeof(pid), "%d", (int) getpid());
    snprintf(lease, sizeof(lease), "%.3f", M.cfg->lease);
    p[0] = name;
    p[1] = pid;
    p[2] = lease;
    res = PQexecParams(conn, rh_sql(RH_STMT_NODE_REGISTER)->sql, 3, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rh_log_error("cannot register this node: %s", rh_db_error(conn, res));
        PQclear(res);
        PQfinish(conn);
        return -1;
    }
    M.node_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    PQfinish(conn);
    rh_log_info("node %" PRId64 " registered as \"%s\"", M.node_id, name);
    return 0;
}

/*
 * A notification said that queue (NULL: any) has new jobs.  Wake one idle
 * worker, round-robin, so that a trickle of single jobs does not stampede
 * every worker into an empty claim; a worker that finds a full batch claims
 * again at once anyway.  Taking `idle` back to 0 with an exchange makes the
 * wake-up ours: the next notification goes to another worker.
 */
static void
wake_idle(const char *queue)
{
    int n = queue ? 1 : M.nslots;

    if (M.state != M_RUNNING)
        return;
    if (queue) {
        int ours = 0;

        for (int i = 0; i < M.cfg->nqueues && !ours; i++)
            ours = strcmp(M.cfg->queues[i], queue) == 0;
        if (!ours)
            return;
    }
    __atomic_fetch_add(&M.shm->notify_seq, 1, __ATOMIC_RELEASE);
    for (int k = 0; k < M.nslots && n > 0; k++) {
        int            i = (M.wake_next + k) % M.nslots;
        rh_shm_slot_t *s = &M.shm->slot[i];

        if (M.workers[i].pid <= 0 || M.workers[i].stopping)
            continue;
        if (!__atomic_exchange_n(&s->idle, 0, __ATOMIC_ACQ_REL))
            continue;
        if (kill(M.workers[i].pid, SIGUSR1) == 0 && rh_metrics)
            __atomic_fetch_add(&rh_metrics->wakeups, 1, __ATOMIC_RELAXED);
        M.wake_next = i + 1;
        n--;
    }
}

int
rh_master_run(rh_config_t *cfg)
{
    sigset_t early;

    memset(&M, 0, sizeof(M));
    /* never: the first STATUS= and WATCHDOG=1 are due at once, however soon after boot */
    M.status_at = M.last_ping = -INFINITY;
    M.cfg = cfg;
    M.pid = getpid();
    rh_log_set_role("master");
    rh_log_level = cfg->log_level;
    rh_log_format = cfg->log_format;
    rh_log_set_syslog(cfg->log_syslog);
    signal(SIGPIPE, SIG_IGN);
    /* the master has no use for it; its children inherit SIG_IGN until their loops take it (child_init) */
    signal(SIGUSR1, SIG_IGN);
    /*
     * Stop and reload signals wait, blocked, until the loop's handlers are
     * set below: the node is registered before that, and a SIGTERM in
     * between (systemctl stop right after start) killed the master at the
     * default action, leaving the node's row unstopped and exiting 143.
     */
    sigemptyset(&early);
    sigaddset(&early, SIGTERM);
    sigaddset(&early, SIGINT);
    sigaddset(&early, SIGHUP);
    sigprocmask(SIG_BLOCK, &early, NULL);

    /*
     * Everything that can fail here, in this process, comes before the node
     * is registered: a start that failed after it (the metrics port in use)
     * left a row in rhino.nodes that was never marked stopped, a live node
     * to rhinoctl until its lease ran out.  After register_node nothing
     * returns early: the loop's end is what marks the node stopped (the
     * reaper's last pass).
     */
    if (rh_master_check_handlers(cfg, &M.pin) < 0)
        return 1;
    M.shm = rh_shm_create();
    if (M.shm == NULL) {
        rh_log_error("mmap() failed for the process table: %s", strerror(errno));
        return 1;
    }
    rh_metrics = &M.shm->metrics;       /* inherited by every child */

    M.loop = ev_default_loop(EVFLAG_AUTO);
    if (M.loop == NULL) {
        rh_log_error("cannot create the event loop");
        return 1;
    }
    rh_notify_init();
    /* bound now, served once the loop runs (a scrape meanwhile waits in the backlog) */
    if (rh_http_start(M.loop, cfg->metrics_listen, metrics_gauges) < 0)
        return 1;
    if (register_node() < 0) {
        rh_http_stop();
        return 1;
    }
    ev_signal_init(&M.sig_term, on_term, SIGTERM);
    ev_signal_start(M.loop, &M.sig_term);
    ev_signal_init(&M.sig_int, on_term, SIGINT);
    ev_signal_start(M.loop, &M.sig_int);
    ev_signal_init(&M.sig_hup, on_hup, SIGHUP);
    ev_signal_start(M.loop, &M.sig_hup);
    sigprocmask(SIG_UNBLOCK, &early, NULL);     /* one that came meanwhile is taken by the loop now */
    /* trace = 1: also hear of children that stop and continue */
    ev_child_init(&M.child, on_child, 0, 1);
    ev_child_start(M.loop, &M.child);
    ev_init(&M.deadline, on_deadline);
    ev_init(&M.check_timer, on_check_timeout);
    ev_timer_init(&M.watchdog, on_watchdog, 0.1, 0.1);
    ev_timer_start(M.loop, &M.watchdog);

    M.nslots = cfg->processes;
    rh_shm_store(&M.shm->nslots, M.nslots);
    for (int i = 0; i < RH_MAX_PROCESSES; i++) {
        M.workers[i].role = RH_ROLE_WORKER;
        M.workers[i].slot = i;
        ev_init(&M.workers[i].respawn, on_respawn);
        M.workers[i].respawn.data = &M.workers[i];
        M.shm->slot[i].min_live = 1;
    }
    M.reaper.role = RH_ROLE_REAPER;
    ev_init(&M.reaper.respawn, on_respawn);
    M.reaper.respawn.data = &M.reaper;

    rh_notify("STATUS=starting: %d worker(s) and the reaper connecting", cfg->processes);
    for (int i = 0; i < cfg->processes; i++)
        spawn(&M.workers[i]);
    M.started = rh_mono_now();
    ev_timer_init(&M.support, on_support, 0.002, 0.002);
    ev_timer_start(M.loop, &M.support);
    rh_log_info("rhino %s started: %d worker(s), queues %d, batch %d", PACKAGE_VERSION, cfg->processes,
                cfg->nqueues, cfg->batch_size);

    ev_run(M.loop, 0);
    rh_http_stop();
    rh_listen_stop();
    rh_pin_release(&M.pin);

    rh_log_info("rhino stopped (exit code %d)", M.exit_code);
    return M.exit_code;
}
