/* rh_log.c - logging: one line per event on stderr, so that journald keeps it; syslog(3) too if asked. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/time.h>

#include "rh_log.h"
#include "rh_proc.h"

int rh_log_level = RH_LOG_INFO;
int rh_log_format = RH_LOG_TEXT;

static int rh_log_syslog_on;

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

int
rh_log_parse_format(const char *s)
{
    if (strcasecmp(s, "text") == 0)
        return RH_LOG_TEXT;
    if (strcasecmp(s, "json") == 0)
        return RH_LOG_JSON;
    return -1;
}

void
rh_log_set_syslog(int on)
{
    /* no LOG_NDELAY: each process opens its socket at its first line */
    if (on && !rh_log_syslog_on)
        openlog("rhino", LOG_PID, LOG_DAEMON);
    else if (!on && rh_log_syslog_on)
        closelog();
    rh_log_syslog_on = on != 0;
}

/*
 * The text line: the message is quoted, with quotes, backslashes and
 * newlines escaped and other control characters blanked, so that one event
 * stays one line whatever a libpq error holds.
 */
static size_t
render_text(char *line, size_t size, size_t o, const char *msg)
{
    for (const char *p = msg; *p && o + 4 < size; p++) {
        unsigned char c = (unsigned char) *p;
        if (c == '"' || c == '\\') {
            line[o++] = '\\';
            line[o++] = (char) c;
        } else if (c == '\n') {
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
    return o;
}

/* Length of the valid UTF-8 sequence at p, or 0 if it is not one. */
static int
utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xBF;
    int           n;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;          /* overlong */
        else if (c == 0xED)
            hi = 0x9F;          /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;          /* beyond U+10FFFF */
    } else
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

/*
 * JSON string escaping (RFC 8259): quote and backslash escaped, \n \r \t \b
 * \f by name, every other control character as \u00XX, and bytes that are
 * not valid UTF-8 (a libpq error can carry any bytes) as \ufffd, so that
 * every line parses.  Stops before an escape that would not fit.
 */
size_t
rh_log_json_escape(char *out, size_t size, size_t len, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *) s;

    while (*p) {
        char   esc[8];
        size_t n;
        int    adv = 1;

        switch (*p) {
        case '"':  memcpy(esc, "\\\"", 2); n = 2; break;
        case '\\': memcpy(esc, "\\\\", 2); n = 2; break;
        case '\n': memcpy(esc, "\\n", 2); n = 2; break;
        case '\r': memcpy(esc, "\\r", 2); n = 2; break;
        case '\t': memcpy(esc, "\\t", 2); n = 2; break;
        case '\b': memcpy(esc, "\\b", 2); n = 2; break;
        case '\f': memcpy(esc, "\\f", 2); n = 2; break;
        default:
            if (*p < 0x20) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[*p >> 4];
                esc[5] = hex[*p & 0xF];
                n = 6;
            } else if ((adv = utf8_len(p)) == 0) {
                memcpy(esc, "\\ufffd", 6);
                n = 6;
                adv = 1;
            } else {
                memcpy(esc, p, (size_t) adv);
                n = (size_t) adv;
            }
        }
        if (len + n >= size)
            break;
        memcpy(out + len, esc, n);
        len += n;
        p += adv;
    }
    if (len < size)
        out[len] = '\0';
    return len;
}

size_t
rh_log_render(char *line, size_t size, int level, const char *msg)
{
    char           ts[48], copy[2048];
    struct timeval tv;
    struct tm      tm;
    size_t         o, n;

    /* libpq messages end with a newline: not part of the event */
    n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        n--;
    if (n >= sizeof(copy))
        n = sizeof(copy) - 1;
    memcpy(copy, msg, n);
    copy[n] = '\0';

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    o = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + o, sizeof(ts) - o, ".%03dZ", (int) (tv.tv_usec / 1000));

    if (rh_log_format == RH_LOG_JSON) {
        o = (size_t) snprintf(line, size, "{\"ts\":\"%s\",\"level\":\"%s\",\"role\":\"", ts, rh_log_level_name(level));
        o = rh_log_json_escape(line, size - 64, o, rh_log_role);
        o += (size_t) snprintf(line + o, size - o, "\",\"pid\":%d,\"msg\":\"", (int) getpid());
        /* room for the closing "}\n */
        o = rh_log_json_escape(line, size - 4, o, copy);
        line[o++] = '"';
        line[o++] = '}';
        line[o++] = '\n';
        line[o] = '\0';
        return o;
    }
    o = (size_t) snprintf(line, size, "ts=%s level=%s role=%s pid=%d msg=\"", ts, rh_log_level_name(level),
                          rh_log_role, (int) getpid());
    o = render_text(line, size - 1, o, copy);
    line[o] = '\0';
    return o;
}

static void
rh_vlog(int level, const char *fmt, va_list ap)
{
    char   msg[2048], line[8192];
    size_t o;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    o = rh_log_render(line, sizeof(line), level, msg);
    /* One write() per line, so that lines of several processes do not interleave. */
    if (write(STDERR_FILENO, line, o) < 0) {
        /* nowhere left to report it */
    }
    if (rh_log_syslog_on) {
        static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

        /* the same line, without its newline; syslog adds its own framing */
        syslog(prio[level < 0 ? 0 : level > RH_LOG_DEBUG ? RH_LOG_DEBUG : level], "%.*s", (int) (o - 1), line);
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
