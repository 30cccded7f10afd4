/* rb_facts.h - the machine, the PostgreSQL server and the source commit, recorded with every measurement. */
#ifndef RB_FACTS_H
#define RB_FACTS_H

#include <libpq-fe.h>

#include "rb_util.h"

/* Read them once (the git commit from srcdir, if it is a git checkout, or from $RHINO_BENCH_COMMIT). */
void rb_facts_collect(PGconn *conn, const char *srcdir);
/* Add "machine", "postgres" and "git_commit" to the open object j. */
void rb_facts_json(rb_json_t *j);
/* One line for the table's header: "PostgreSQL 15.4, synchronous_commit=on, ... on host (2 CPUs)". */
const char *rb_facts_line(void);

#endif
