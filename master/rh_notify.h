/* rh_notify.h - tell systemd how the service is doing: the sd_notify protocol. */
#ifndef RH_NOTIFY_H
#define RH_NOTIFY_H

/*
 * Read NOTIFY_SOCKET and WATCHDOG_USEC (WATCHDOG_PID, when set, must be
 * ours, as sd_watchdog_enabled() has it).  Returns 1 when a service manager
 * listens, 0 otherwise (every call below is then a no-op).
 */
int    rh_notify_init(void);

/* Seconds between two WATCHDOG=1: half of WATCHDOG_USEC; 0 when no watchdog is set. */
double rh_notify_watchdog_interval(void);

/* Send one datagram of "KEY=value" lines (printf format). */
void   rh_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* RELOADING=1 with MONOTONIC_USEC=, as Type=notify-reload asks; READY=1 must follow. */
void   rh_notify_reloading(void);

#endif
