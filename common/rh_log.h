/* rh_log.h - one line per event on stderr, key=value, level-filtered. */
#ifndef RH_LOG_H
#define RH_LOG_H

#include <stdarg.h>

typedef enum {
    RH_LOG_ERROR = 0,
    RH_LOG_WARNING,
    RH_LOG_INFO,
    RH_LOG_DEBUG
} rh_log_level_t;

extern int rh_log_level;

/* Set the role shown on every line ("master", "worker.3", "reaper", "rhinoctl"). */
void rh_log_set_role(const char *role);
int  rh_log_parse_level(const char *s);      /* -1 if unknown */
const char *rh_log_level_name(int level);

void rh_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define rh_log_error(...)   rh_log(RH_LOG_ERROR, __VA_ARGS__)
#define rh_log_warning(...) rh_log(RH_LOG_WARNING, __VA_ARGS__)
#define rh_log_info(...)    do { if (rh_log_level >= RH_LOG_INFO) rh_log(RH_LOG_INFO, __VA_ARGS__); } while (0)
#define rh_log_debug(...)   do { if (rh_log_level >= RH_LOG_DEBUG) rh_log(RH_LOG_DEBUG, __VA_ARGS__); } while (0)

/* Log at error level and exit with RH_EXIT_FATAL, so the master does not respawn. */
void rh_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
