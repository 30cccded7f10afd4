/*
 * rh_listen.c - the master's LISTEN connection.
 *
 * Why the master: it is the one process per host with an event loop that
 * never blocks on the database, so a notification is read the moment it
 * arrives; the reaper runs synchronous statements and would sit on it.
 * rhino.enqueue (and rhinoctl enqueue --bulk, librhino, the reaper's
 * promotion of due jobs) call pg_notify('rhino_jobs', queue) once per
 * queue and transaction (PostgreSQL folds repeated identical notifications
 * of one transaction), never from a per-row trigger.
 *
 * The connection holds session state (LISTEN), so behind PgBouncer in
 * transaction mode it must go to the server directly: [database]
 * listen_dsn.  It is only an accelerator: workers still poll.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "rh_db.h"
#include "rh_listen.h"
#include "rh_log.h"
#include "rh_sql.h"

#define RH_LISTEN_MAX_DELAY 30.0

static struct {
    struct ev_loop   *loop;
    rh_listen_wake_fn wake;
    PGconn           *conn;
    char             *dsn;           /* NULL = off */
    int               connecting;
    int               listening;     /* LISTEN acknowledged */
    int               busy;          /* a statement is in flight (one at a time) */
    int               busy_listen;   /* ... and it is the LISTEN */
    int64_t           node_id;
    int               want_idle;     /* what rhino.nodes.idle should say */
    int               sent_idle;     /* what the statement in flight sets */
    int               told_idle;     /* what the database says: -1 = unknown */
    int               io_events;
    double            delay;         /* next reconnect backoff */
    int               warned;        /* one warning per outage, not one per attempt */
    ev_io             io;
    ev_timer          retry;
} L;

static void l_connect(void);
static void l_broken(const char *why);

static void
l_io_set(int events)
{
    int fd = L.conn ? PQsocket(L.conn) : -1;

    if (fd < 0) {
        ev_io_stop(L.loop, &L.io);
        return;
    }
    if (ev_is_active(&L.io) && L.io.fd == fd && L.io_events == events)
        return;
    ev_io_stop(L.loop, &L.io);
    ev_io_set(&L.io, fd, events);
    L.io_events = events;
    ev_io_start(L.loop, &L.io);
}

static void
l_close(void)
{
    ev_io_stop(L.loop, &L.io);
    if (L.conn)
        PQfinish(L.conn);
    L.conn = NULL;
    L.connecting = 0;
    L.listening = 0;
    L.busy = 0;
    L.told_idle = -1;
}

/*
 * Tell the database whether this node has an idle worker, when that changed
 * and nothing else is in flight; producers notify only while some node has
 * one (rhino.wake, sql/002_job_columns.sql).
 */
static void
l_send_idle(void)
{
    char        id[32];
    const char *p[2] = { id, NULL };

    if (L.conn == NULL || !L.listening || L.busy || L.want_idle == L.told_idle)
        return;
    snprintf(id, sizeof(id), "%" PRId64, L.node_id);
    p[1] = L.want_idle ? "true" : "false";
    if (!PQsendQueryParams(L.conn, rh_sql(RH_STMT_NODE_IDLE)->sql, 2, NULL, p, NULL, NULL, 0) ||
        PQflush(L.conn) < 0) {
        l_broken(rh_db_error(L.conn, NULL));
        return;
    }
    L.busy = 1;
    L.busy_listen = 0;
    L.sent_idle = L.want_idle;
}

/* The connection failed or broke: say so once, and try again later. */
static void
l_broken(const char *why)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "%s", why ? why : "");
    msg[strcspn(msg, "\n")] = '\0';
    if (!L.warned)
        rh_log_warning("LISTEN connection: %s; workers poll until it is back (retrying in %.0f s)",
                       msg[0] ? msg : "connection lost", L.delay);
    L.warned = 1;
    l_close();
    ev_timer_stop(L.loop, &L.retry);
    ev_timer_set(&L.retry, L.delay, 0);
    ev_timer_start(L.loop, &L.retry);
    L.delay = L.delay * 2 > RH_LISTEN_MAX_DELAY ? RH_LISTEN_MAX_DELAY : L.delay * 2;
}

static void
l_read(void)
{
    PGnotify *n;
    PGresult *res;

    if (!PQconsumeInput(L.conn)) {
        l_broken(rh_db_error(L.conn, NULL));
        return;
    }
    /* the results of the statement in flight: the LISTEN, or an idle report */
    while (L.busy && !PQisBusy(L.conn)) {
        if ((res = PQgetResult(L.conn)) == NULL) {
            L.busy = 0;
            break;
        }
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            char msg[256];

            snprintf(msg, sizeof(msg), "%s failed: %s", L.busy_listen ? "LISTEN" : "idle report",
                     rh_db_error(L.conn, res));
            PQclear(res);
            l_broken(msg);
            return;
        }
        PQclear(res);
        if (!L.busy_listen) {
            L.told_idle = L.sent_idle;
        } else if (!L.listening) {
            L.listening = 1;
            if (L.warned)
                rh_log_info("LISTEN connection is back; workers are woken by notifications again");
            else
                rh_log_debug("listening for new jobs on channel rhino_jobs");
            L.warned = 0;
            L.delay = 1;
            L.wake(NULL);       /* what was enqueued while we were not listening */
        }
    }
    while ((n = PQnotifies(L.conn)) != NULL) {
        L.wake(n->extra);
        PQfreemem(n);
    }
    if (PQstatus(L.conn) == CONNECTION_BAD) {
        l_broken(rh_db_error(L.conn, NULL));
        return;
    }
    l_send_idle();
}

static void
l_poll_connect(void)
{
    switch (PQconnectPoll(L.conn)) {
    case PGRES_POLLING_READING:
        l_io_set(EV_READ);
        return;
    case PGRES_POLLING_WRITING:
        l_io_set(EV_WRITE);
        return;
    case PGRES_POLLING_FAILED:
        l_broken(rh_db_error(L.conn, NULL));
        return;
    default:
        break;
    }
    L.connecting = 0;
    if (PQsetnonblocking(L.conn, 1) != 0 || !PQsendQuery(L.conn, rh_sql(RH_STMT_LISTEN)->sql)) {
        l_broken(rh_db_error(L.conn, NULL));
        return;
    }
    /* a 20-byte query always fits the socket buffer; flush anyway */
    if (PQflush(L.conn) < 0) {
        l_broken(rh_db_error(L.conn, NULL));
        return;
    }
    L.busy = 1;
    L.busy_listen = 1;
    l_io_set(EV_READ);
}

static void
on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void) loop;
    (void) w;
    (void) revents;
    if (L.connecting)
        l_poll_connect();
    else
        l_read();
}

static void
on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) w;
    (void) revents;
    l_connect();
}

static void
l_connect(void)
{
    l_close();
    if (L.dsn == NULL)
        return;
    L.conn = rh_db_connect_start(L.dsn, "listener");
    if (L.conn == NULL || PQstatus(L.conn) == CONNECTION_BAD) {
        l_broken(L.conn ? rh_db_error(L.conn, NULL) : "out of memory");
        return;
    }
    L.connecting = 1;
    l_poll_connect();
}

static char *
l_dsn(const rh_config_t *cfg)
{
    if (!cfg->listen)
        return NULL;
    return strdup(cfg->listen_dsn && cfg->listen_dsn[0] ? cfg->listen_dsn : cfg->dsn ? cfg->dsn : "");
}

void
rh_listen_idle(int idle)
{
    L.want_idle = idle != 0;
    l_send_idle();
}

void
rh_listen_start(struct ev_loop *loop, const rh_config_t *cfg, int64_t node_id, rh_listen_wake_fn wake)
{
    memset(&L, 0, sizeof(L));
    L.loop = loop;
    L.wake = wake;
    L.node_id = node_id;
    L.told_idle = -1;
    L.delay = 1;
    L.dsn = l_dsn(cfg);
    ev_init(&L.io, on_io);
    ev_init(&L.retry, on_retry);
    l_connect();
}

void
rh_listen_reconfigure(const rh_config_t *cfg)
{
    char *dsn;

    if (L.loop == NULL)
        return;                 /* not started yet (rh_master.c, start_support): it reads the new config */
    dsn = l_dsn(cfg);
    if ((dsn == NULL && L.dsn == NULL) || (dsn && L.dsn && strcmp(dsn, L.dsn) == 0)) {
        free(dsn);
        return;
    }
    free(L.dsn);
    L.dsn = dsn;
    ev_timer_stop(L.loop, &L.retry);
    L.delay = 1;
    L.warned = 0;
    l_connect();
    if (dsn == NULL)
        rh_log_info("[database] listen = off: workers find new jobs by polling");
}

void
rh_listen_stop(void)
{
    if (L.loop == NULL)
        return;
    ev_timer_stop(L.loop, &L.retry);
    l_close();
    free(L.dsn);
    L.dsn = NULL;
}

void
rh_listen_child(void)
{
    if (L.loop == NULL)
        return;
    ev_timer_stop(L.loop, &L.retry);
    ev_io_stop(L.loop, &L.io);
    /*
     * Close our copy of the socket without a Terminate message: the master
     * keeps using the connection.  PQfinish would send one on the shared
     * socket; closing the descriptor alone leaves the server's end alone.
     * L.conn keeps pointing at the copied PGconn, never used again, so that
     * it is not a leak in the child's eyes (LeakSanitizer).
     */
    if (L.conn && PQsocket(L.conn) >= 0)
        close(PQsocket(L.conn));
    L.loop = NULL;
}
