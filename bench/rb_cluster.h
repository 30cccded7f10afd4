/* rb_cluster.h - a throwaway PostgreSQL cluster for rhino-bench when it is given no database. */
#ifndef RB_CLUSTER_H
#define RB_CLUSTER_H

#include <stddef.h>

/*
 * initdb a new cluster in a fresh directory under $TMPDIR (or /tmp), start
 * it on a Unix socket only, create the database rhino_bench and write its
 * DSN into dsn.  Under root the server runs as the postgres user, since
 * PostgreSQL refuses root.  Dies with the reason (and the path of the log)
 * if any step fails.  rb_cluster_stop must already be due at exit.
 */
void rb_cluster_start(char *dsn, size_t dsnlen);

/*
 * Stop the cluster (immediate: it holds nothing worth a checkpoint) and
 * delete it; when its start failed, keep the directory for the logs.
 * Idempotent, and a no-op in a forked child.  Run from rhino-bench's atexit.
 */
void rb_cluster_stop(void);

#endif
