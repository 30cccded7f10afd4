/* rh_http.h - GET /metrics on the master's event loop ([metrics] listen). */
#ifndef RH_HTTP_H
#define RH_HTTP_H

#include <ev.h>

#include "rh_metrics.h"

/* Fills the gauges only the master knows; called once per scrape. */
typedef void (*rh_http_gauges_fn)(rh_metrics_gauges_t *g);

/*
 * Serve GET /metrics on listen ("HOST:PORT"; NULL or "" = off) from loop:
 * libmicrohttpd in external-polling mode, one ev_io on its epoll descriptor
 * plus a timer from MHD_get_timeout(), so no thread ever touches the
 * master's state.  0, or -1 after logging why (bind failed...).
 */
int  rh_http_start(struct ev_loop *loop, const char *addr, rh_http_gauges_fn gauges)
    __attribute__((warn_unused_result));

/* After a reload: move to a new address if it changed; on failure keep the old one (logged). */
void rh_http_reconfigure(const char *addr);

void rh_http_stop(void);

/* In a freshly forked child: stop the watchers and close the descriptors, leaving the daemon alone. */
void rh_http_child(void);

#endif
