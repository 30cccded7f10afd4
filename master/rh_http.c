/*
 * rh_http.c - the Prometheus endpoint: libmicrohttpd driven by the master's
 * libev loop.
 *
 * MHD runs in "external polling" mode with epoll: everything it waits on
 * sits behind one epoll descriptor, which we watch with an ev_io, and
 * MHD_get_timeout() says when it next needs to run (connection timeouts,
 * data it already holds).  So MHD_run() and the request callback run on
 * the master's own thread, between its other events, and read only shared
 * memory: a scrape costs the master a few hundred microseconds of
 * formatting and never touches the database.  We open the listening socket
 * ourselves, so that a bind failure is reported in our words.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#ifdef HAVE_LIBMICROHTTPD
#include <microhttpd.h>
#endif

#include "rh_http.h"
#include "rh_log.h"

#ifdef HAVE_LIBMICROHTTPD

/* MHD_OPTION_CONNECTION_LIMIT: at most this many scrapes at once */
#define RH_HTTP_CONNECTIONS 32

typedef struct {
    struct MHD_Daemon *d;
    int                lfd, efd;
    char              *addr;
    ev_io              io;
    ev_timer           timer;
    /* the sockets of open connections, -1 = free: a forked child closes them (rh_http_child) */
    int                conn_fd[RH_HTTP_CONNECTIONS];
} rh_httpd_t;

static struct {
    struct ev_loop   *loop;
    rh_http_gauges_fn gauges;
    rh_httpd_t       *cur;
} H;

static void
h_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    rh_log_warning("metrics endpoint: %s", msg);
}

static enum MHD_Result
reply(struct MHD_Connection *c, unsigned code, char *body, size_t len, const char *ctype)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    enum MHD_Result      ret;

    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
           const char *upload_data, size_t *upload_data_size, void **req_cls)
{
    rh_metrics_gauges_t g;
    char               *body;
    size_t              len = 0;

    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        body = strdup("only GET /metrics is served here\n");
        return body ? reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, body, strlen(body), "text/plain") : MHD_NO;
    }
    if (strcmp(url, "/metrics") != 0) {
        body = strdup("not found: the metrics are at /metrics\n");
        return body ? reply(c, MHD_HTTP_NOT_FOUND, body, strlen(body), "text/plain") : MHD_NO;
    }
    memset(&g, 0, sizeof(g));
    if (H.gauges)
        H.gauges(&g);
    body = rh_metrics_render(&g, &len);
    if (body == NULL)
        return MHD_NO;
    return reply(c, MHD_HTTP_OK, body, len, "text/plain; version=0.0.4; charset=utf-8");
}

/* Let MHD do what is due, then re-arm the timer for its next deadline. */
static void
h_run(rh_httpd_t *h)
{
    MHD_UNSIGNED_LONG_LONG ms;

    MHD_run(h->d);
    ev_timer_stop(H.loop, &h->timer);
    if (MHD_get_timeout(h->d, &ms) == MHD_YES) {
        ev_timer_set(&h->timer, (double) ms / 1000.0, 0);
        ev_timer_start(H.loop, &h->timer);
    }
}

static void
on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    h_run(w->data);
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    h_run(w->data);
}

/*
 * Why track the connections: a child forked while a scraper holds a
 * keep-alive connection inherits its socket, and MHD offers no list of
 * them.  The child never uses the socket, but kept the connection open for
 * its whole life after the master had closed its own side.
 */
static void
on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx, enum MHD_ConnectionNotificationCode code)
{
    rh_httpd_t                     *h = cls;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int                             started = code == MHD_CONNECTION_NOTIFY_STARTED;

    if (ci == NULL)
        return;
    /* a new one takes a free place; a closed one gives its place back */
    for (int i = 0; i < RH_HTTP_CONNECTIONS; i++)
        if (h->conn_fd[i] == (started ? -1 : ci->connect_fd)) {
            h->conn_fd[i] = started ? ci->connect_fd : -1;
            return;
        }
}

static rh_httpd_t *
h_open(const char *addr)
{
    struct sockaddr_storage   sa;
    socklen_t                 salen;
    char                      err[512];
    const union MHD_DaemonInfo *info;
    rh_httpd_t               *h;
    int                       one = 1;

    if (rh_metrics_parse_listen(addr, &sa, &salen, err, sizeof(err)) < 0) {
        rh_log_error("[metrics] listen: %s", err);
        return NULL;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->efd = -1;
    for (int i = 0; i < RH_HTTP_CONNECTIONS; i++)
        h->conn_fd[i] = -1;
    h->lfd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (h->lfd < 0) {
        rh_log_error("socket() failed for the metrics endpoint %s: %s", addr, strerror(errno));
        free(h);
        return NULL;
    }
    setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(h->lfd, (struct sockaddr *) &sa, salen) < 0 || listen(h->lfd, 64) < 0) {
        rh_log_error("cannot serve metrics on %s: %s", addr, strerror(errno));
        close(h->lfd);
        free(h);
        return NULL;
    }
    h->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, NULL,
                            MHD_OPTION_EXTERNAL_LOGGER, h_log, NULL,     /* first, or MHD warns */
                            MHD_OPTION_LISTEN_SOCKET, (MHD_socket) h->lfd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned int) RH_HTTP_CONNECTIONS,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 10,
                            MHD_OPTION_END);
    if (h->d == NULL) {
        rh_log_error("cannot start the metrics endpoint on %s (libmicrohttpd refused)", addr);
        close(h->lfd);
        free(h);
        return NULL;
    }
    info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    if (info == NULL) {
        rh_log_error("cannot start the metrics endpoint on %s: libmicrohttpd has no epoll descriptor", addr);
        MHD_stop_daemon(h->d);
        free(h);
        return NULL;
    }
    h->efd = info->epoll_fd;
    h->addr = strdup(addr);
    ev_io_init(&h->io, on_io, h->efd, EV_READ);
    h->io.data = h;
    ev_io_start(H.loop, &h->io);
    ev_init(&h->timer, on_timer);
    h->timer.data = h;
    rh_log_info("serving metrics on http://%s/metrics", addr);
    return h;
}

static void
h_close(rh_httpd_t *h)
{
    if (h == NULL)
        return;
    ev_io_stop(H.loop, &h->io);
    ev_timer_stop(H.loop, &h->timer);
    MHD_stop_daemon(h->d);      /* closes the listening socket it was given too */
    free(h->addr);
    free(h);
}

int
rh_http_start(struct ev_loop *loop, const char *addr, rh_http_gauges_fn gauges)
{
    H.loop = loop;
    H.gauges = gauges;
    if (addr == NULL || *addr == '\0')
        return 0;
    H.cur = h_open(addr);
    return H.cur ? 0 : -1;
}

void
rh_http_reconfigure(const char *addr)
{
    rh_httpd_t *h;

    if (addr == NULL)
        addr = "";
    if (H.cur ? strcmp(H.cur->addr, addr) == 0 : *addr == '\0')
        return;
    if (*addr == '\0') {
        rh_log_info("metrics endpoint on %s closed ([metrics] listen removed)", H.cur->addr);
        h_close(H.cur);
        H.cur = NULL;
        return;
    }
    /* close first: the new address may be the same port on another host part */
    if (H.cur) {
        char *old = strdup(H.cur->addr);

        h_close(H.cur);
        H.cur = h_open(addr);
        if (H.cur == NULL && old != NULL) {
            rh_log_error("keeping the metrics endpoint on %s", old);
            H.cur = h_open(old);
        }
        free(old);
        return;
    }
    h = h_open(addr);
    H.cur = h;
}

void
rh_http_stop(void)
{
    h_close(H.cur);
    H.cur = NULL;
}

void
rh_http_child(void)
{
    if (H.cur == NULL)
        return;
    ev_io_stop(H.loop, &H.cur->io);
    ev_timer_stop(H.loop, &H.cur->timer);
    close(H.cur->efd);
    close(H.cur->lfd);
    for (int i = 0; i < RH_HTTP_CONNECTIONS; i++)
        if (H.cur->conn_fd[i] >= 0)
            close(H.cur->conn_fd[i]);
    H.cur = NULL;               /* the daemon's memory is simply left: the child never uses it */
}

#else /* !HAVE_LIBMICROHTTPD: the configuration refuses [metrics] listen */

int
rh_http_start(struct ev_loop *loop, const char *addr, rh_http_gauges_fn gauges)
{
    if (addr != NULL && *addr != '\0') {
        rh_log_error("[metrics] listen is set, but rhino was built without libmicrohttpd");
        return -1;
    }
    return 0;
}

void
rh_http_reconfigure(const char *addr)
{
}

void
rh_http_stop(void)
{
}

void
rh_http_child(void)
{
}

#endif
