/* rh_log.h - one line per event on stderr (key=value or JSON; optionally syslog too), level-filtered. */
#ifndef RH_LOG_H
#define RH_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
    RH_LOG_ERROR = 0,
    RH_LOG_WARNING,
    RH_LOG_INFO,
    RH_LOG_DEBUG
} rh_log_level_t;

/* [log] format: text is ts=... level=... role=... pid=... msg="..."; json is one object per line. */
typedef enum {
    RH_LOG_TEXT = 0,
    RH_LOG_JSON
} rh_log_format_t;

extern int rh_log_level;
extern int rh_log_format;                    /* rh_log_format_t */

/* Set the role shown on every line ("master", "worker.3", "reaper", "rhinoctl"). */
void rh_log_set_role(const char *role);
int  rh_log_parse_level(const char *s);      /* -1 if unknown */
const char *rh_log_level_name(int level);
int  rh_log_parse_format(const char *s);     /* -1 if unknown */
/*
 * [log] syslog: on also sends every line to syslog(3) (ident "rhino",
 * facility LOG_DAEMON, priority from the level); off closes it again.
 */
void rh_log_set_syslog(int on);

/*
 * Render one event into line (without writing it): the exact bytes rh_log
 * writes, newline included, truncated to fit.  Returns the length.  For tests.
 */
size_t rh_log_render(char *line, size_t size, int level, const char *msg);
/* Append s to out as the inside of a JSON string (no quotes); returns the new length. */
size_t rh_log_json_escape(char *out, size_t size, size_t len, const char *s);

void rh_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define rh_log_error(...)   rh_log(RH_LOG_ERROR, __VA_ARGS__)
#define rh_log_warning(...) rh_log(RH_LOG_WARNING, __VA_ARGS__)
#define rh_log_info(...)    do { if (rh_log_level >= RH_LOG_INFO) rh_log(RH_LOG_INFO, __VA_ARGS__); } while (0)
#define rh_log_debug(...)   do { if (rh_log_level >= RH_LOG_DEBUG) rh_log(RH_LOG_DEBUG, __VA_ARGS__); } while (0)

/* Log at error level and exit with RH_EXIT_FATAL, so the master does not respawn. */
void rh_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
