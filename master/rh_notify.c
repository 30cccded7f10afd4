/*
 * rh_notify.c - the sd_notify protocol: one datagram of newline-separated
 * "KEY=value" assignments to the AF_UNIX socket named by $NOTIFY_SOCKET.
 *
 * With libsystemd we call its sd_notify() (which also knows vsock and the
 * other transports of newer systemd versions).  Without it, the same few
 * lines by hand: a path socket, or an abstract one when the name starts
 * with '@'.  Either way a failed send is logged once and otherwise ignored:
 * rhino must not stop because nobody listens.
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "rh_log.h"
#include "rh_notify.h"

static struct {
    int    enabled;
    double watchdog;            /* seconds between pings, 0 = none */
    int    warned;
#ifndef HAVE_LIBSYSTEMD
    int    fd;
    struct sockaddr_un addr;
    socklen_t addrlen;
#endif
} N;

#ifndef HAVE_LIBSYSTEMD
/* sd_watchdog_enabled(0, &usec): WATCHDOG_USEC set, and WATCHDOG_PID unset or ours. */
static int
watchdog_usec(unsigned long long *usec)
{
    const char *s = getenv("WATCHDOG_USEC"), *p = getenv("WATCHDOG_PID");
    char       *end;

    if (s == NULL || *s == '\0')
        return 0;
    errno = 0;
    *usec = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || *usec == 0)
        return 0;
    if (p != NULL && *p != '\0' && strtol(p, NULL, 10) != (long) getpid())
        return 0;
    return 1;
}
#endif

int
rh_notify_init(void)
{
    const char        *sock = getenv("NOTIFY_SOCKET");
    unsigned long long usec = 0;
    int                wd;

    memset(&N, 0, sizeof(N));
    if (sock == NULL || *sock == '\0')
        return 0;
#ifdef HAVE_LIBSYSTEMD
    {
        uint64_t u = 0;

        wd = sd_watchdog_enabled(0, &u) > 0;
        usec = u;
    }
#else
    N.fd = -1;
    if (sock[0] != '/' && sock[0] != '@') {
        rh_log_warning("NOTIFY_SOCKET=%s is not a path or an abstract socket name; not notifying systemd", sock);
        return 0;
    }
    if (strlen(sock) >= sizeof(N.addr.sun_path)) {
        rh_log_warning("NOTIFY_SOCKET is too long; not notifying systemd");
        return 0;
    }
    N.addr.sun_family = AF_UNIX;
    memcpy(N.addr.sun_path, sock, strlen(sock));
    if (sock[0] == '@')
        N.addr.sun_path[0] = '\0';
    N.addrlen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(sock));
    N.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (N.fd < 0) {
        rh_log_warning("socket(AF_UNIX) failed for NOTIFY_SOCKET: %s; not notifying systemd", strerror(errno));
        return 0;
    }
    wd = watchdog_usec(&usec);
#endif
    N.enabled = 1;
    if (wd)
        N.watchdog = (double) usec / 2e6;
    rh_log_debug("notifying systemd at %s%s", sock, N.watchdog > 0 ? ", watchdog on" : "");
    return 1;
}

double
rh_notify_watchdog_interval(void)
{
    return N.enabled ? N.watchdog : 0;
}

void
rh_notify(const char *fmt, ...)
{
    char    msg[1024];
    va_list ap;
    int     rc;

    if (!N.enabled)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
#ifdef HAVE_LIBSYSTEMD
    rc = sd_notify(0, msg);
    if (rc < 0)
        errno = -rc;
#else
    rc = sendto(N.fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *) &N.addr, N.addrlen) < 0 ? -1 : 1;
#endif
    if (rc < 0 && !N.warned) {
        N.warned = 1;
        rh_log_warning("sd_notify failed: %s (logged once)", strerror(errno));
    }
}

void
rh_notify_reloading(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    rh_notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
              (unsigned long long) ts.tv_sec * 1000000ULL + (unsigned long long) ts.tv_nsec / 1000ULL);
}
