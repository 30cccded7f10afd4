/* rh_listen.h - LISTEN rhino_jobs on the master's event loop: wake idle workers without polling. */
#ifndef RH_LISTEN_H
#define RH_LISTEN_H

#include <stdint.h>

#include <ev.h>

#include "rh_config.h"

/* Called once per notification, with its payload (a queue name). */
typedef void (*rh_listen_wake_fn)(const char *queue);

/*
 * Keep one connection LISTENing on channel rhino_jobs ([database] listen,
 * listen_dsn): connected without blocking the loop, reconnected with a
 * backoff when it breaks.  While it is down the workers still poll every
 * poll_interval, so a lost notification costs latency, never a job.
 * Each (re)connection calls wake(NULL) once, since notifications sent
 * while it was down are gone.
 */
void rh_listen_start(struct ev_loop *loop, const rh_config_t *cfg, int64_t node_id, rh_listen_wake_fn wake);

/*
 * Whether some worker of this node is idle; written to rhino.nodes.idle
 * (on the LISTEN connection, when it changes) so that producers notify
 * only when a notification can wake someone.
 */
void rh_listen_idle(int idle);

/* After a reload: reconnect if [database] listen or the DSN changed. */
void rh_listen_reconfigure(const rh_config_t *cfg);

void rh_listen_stop(void);

/* In a freshly forked child: drop the watchers and the socket without telling the server. */
void rh_listen_child(void);

#endif
