/* rh_config.h - the INI configuration: one declarative table of keys, parsed with iniparser. */
#ifndef RH_CONFIG_H
#define RH_CONFIG_H

#include <stddef.h>

#define RH_MAX_PROCESSES 256
#define RH_MAX_BATCH     1000

typedef struct rh_config {
    char    *path;                  /* the file it was read from */

    /* [database] */
    char    *dsn;                   /* after RHINO_DSN; "" = libpq's defaults */
    int      listen;                /* the master LISTENs for new jobs (rh_listen.c) */
    char    *listen_dsn;            /* its own DSN ("" = dsn): behind PgBouncer, the server's */
    int      prepare;               /* workers use named prepared statements (off behind PgBouncer < 1.21) */

    /* [worker] */
    int      processes;
    int      batch_size;
    char   **queues;                /* NULL-terminated */
    int      nqueues;
    double   poll_interval;         /* seconds between claims when idle */
    double   job_timeout;           /* default handler deadline; 0 = none */
    double   cancel_grace;          /* a cancelled running handler's time to stop before its worker is killed */
    int      max_crashes;           /* crashes of one job before it is discarded */
    int      early_start;           /* an idle worker runs a new batch's fast handlers while its claim commits */
    double   rescan_interval;       /* a claim walks a queue from its first entry at least this often; 0 = always */

    /* [handlers] */
    char   **handler_paths;         /* NULL-terminated: .so files or directories, absolute */
    int      nhandler_paths;
    double   handler_load_timeout;  /* the check that loads them before use is killed after this long */

    /* [retry] */
    double   retry_base_delay;
    double   retry_max_delay;

    /* [reaper] */
    double   reaper_interval;
    double   lease;                 /* node lease; a host silent this long is presumed dead */
    double   vacuum_interval;       /* VACUUM a small, churned rhino.jobs at most this often; 0 = never */

    /* [master] */
    char    *node_name;             /* "" = the host name */
    double   shutdown_timeout;      /* SIGTERM: drain deadline */
    double   fast_shutdown_timeout; /* SIGINT: drain deadline */

    /* [retention] */
    double   retention_completed;   /* seconds; 0 = do not keep completed jobs */
    double   retention_discarded;

    /* [log] */
    int      log_level;
    int      log_format;            /* rh_log_format_t: text or json */
    int      log_syslog;            /* also send each line to syslog(3) */

    /* [metrics] */
    char    *metrics_listen;        /* HOST:PORT of GET /metrics; "" = off */
    int      metrics_depth_limit;   /* rhino_queue_depth counts up to this per queue; 0 = all */

    /* [schedule NAME] sections (rh_schedule.c): upserted into rhino.schedules by the reaper */
    struct rh_schedule_def *schedules;
    int      nschedules;
} rh_config_t;

/*
 * Read and validate FILE into *cfg (zeroed first).  On error returns -1 and
 * writes "FILE: [section] key: reason" into err.  RHINO_DSN, when set,
 * replaces [database] dsn.  A relative [handlers] path is made absolute
 * against the directory FILE is in (not the working directory).
 */
int  rh_config_load(const char *file, rh_config_t *cfg, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* The defaults alone, as if the file were empty (for rhinoctl without -c). */
void rh_config_defaults(rh_config_t *cfg);
void rh_config_free(rh_config_t *cfg);
/* The i-th key Rhino understands (0-based): 0 and its section, key and default; -1 past the last. */
int  rh_config_key(size_t i, const char **section, const char **key, const char **def);

/* Split a comma list, trimming blanks; NULL-terminated; empty items are an error (-1). */
int  rh_split_list(const char *s, char ***out, int *n);
void rh_free_list(char **list);

/*
 * Parse a duration into seconds: a decimal number ("1", "0.25", "1.5e1") of
 * seconds, or with a unit: ms, s, m or min, h, d ("500ms", "5m", "1.5h").
 * -1, *out untouched, on garbage, an unknown unit, NaN, infinity, or a value
 * out of [min,max].  The config file and rhinoctl both use it.
 */
int  rh_parse_seconds(const char *s, double min, double max, double *out);

#endif
