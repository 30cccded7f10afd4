/* rh_log.c - logging: one line per event on stderr, so that journald keeps it. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>

#include "rh_log.h"
#include "rh_proc.h"

int rh_log_level = RH_LOG_INFO;

static char rh_log_role[32] = "rhino";

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void
rh_log_set_role(const char *role)
{
    snprintf(rh_log_role, sizeof(rh_log_role), "%s", role);
}

int
rh_log_parse_level(const char *s)
{
    for (int i = 0; i < (int) (sizeof(level_names) / sizeof(level_names[0])); i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warn") == 0)
        return RH_LOG_WARNING;
    return -1;
}

const char *
rh_log_level_name(int level)
{
    if (level < 0 || level > RH_LOG_DEBUG)
        return "?";
    return level_names[level];
}

static void
rh_vlog(int level, const char *fmt, va_list ap)
{
    char msg[2048], line[2400];
    struct timeval tv;
    struct tm tm;
    size_t o = 0;

    vsnprintf(msg, sizeof(msg), fmt, ap);

    /*
     * The message is quoted, with quotes, backslashes and control characters
     * escaped, so that one event stays one line whatever a libpq error holds.
     */
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    o += strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    o += snprintf(line + o, sizeof(line) - o, ".%03dZ level=%s role=%s pid=%d msg=\"",
                  (int) (tv.tv_usec / 1000), rh_log_level_name(level), rh_log_role, (int) getpid());
    for (const char *p = msg; *p && o < sizeof(line) - 8; p++) {
        unsigned char c = (unsigned char) *p;
        if (c == '"' || c == '\\') {
            line[o++] = '\\';
            line[o++] = (char) c;
        } else if (c == '\n') {
            if (p[1] == '\0')
                break;          /* libpq messages end with a newline */
            line[o++] = '\\';
            line[o++] = 'n';
        } else if (c < 0x20) {
            line[o++] = ' ';
        } else {
            line[o++] = (char) c;
        }
    }
    line[o++] = '"';
    line[o++] = '\n';
    /* One write() per line, so that lines of several processes do not interleave. */
    if (write(STDERR_FILENO, line, o) < 0) {
        /* nowhere left to report it */
    }
}

void
rh_log(int level, const char *fmt, ...)
{
    va_list ap;

    if (level > rh_log_level)
        return;
    va_start(ap, fmt);
    rh_vlog(level, fmt, ap);
    va_end(ap);
}

void
rh_fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rh_vlog(RH_LOG_ERROR, fmt, ap);
    va_end(ap);
    exit(RH_EXIT_FATAL);
}
