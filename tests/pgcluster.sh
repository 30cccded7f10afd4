#!/usr/bin/env bash
#
# pgcluster.sh - a throw-away PostgreSQL 15 cluster for Rhino's test suites.
#
#   tests/pgcluster.sh start     create the cluster on first use, start it, make sure the
#                                database exists; safe to repeat (a running cluster is reloaded)
#   tests/pgcluster.sh stop      fast shutdown; nothing to do if it is not running
#   tests/pgcluster.sh restart-fast | restart-immediate
#                                stop with -m fast / -m immediate and start again (fault suite)
#   tests/pgcluster.sh env       print the DSN the tests use (RHINO_TEST_DSN)
#   tests/pgcluster.sh status    say whether it runs; exit 1 if not
#   tests/pgcluster.sh clean     drop the rt_* databases and roles that earlier test runs left behind
#   tests/pgcluster.sh psql ...  psql on the test database, extra arguments passed on
#   tests/pgcluster.sh destroy   stop it and delete everything under the base directory
#
# Knobs: RHINO_PG_BASE (default /tmp/rhino-test-pg; must be under /tmp, since destroy
# deletes it), RHINO_PG_PORT (default 55439), PGBIN (default /usr/lib/postgresql/15/bin).
#
# The server listens on 127.0.0.1 and on a socket in the base directory, with trust
# authentication: it holds nothing but test data, and the tests must not need passwords.
# PostgreSQL refuses to run as root, so under root everything runs as the postgres user.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
BASE=${RHINO_PG_BASE:-/tmp/rhino-test-pg}
PORT=${RHINO_PG_PORT:-55439}
DATA=$BASE/data
SOCKDIR=$BASE/run
LOGFILE=$BASE/server.log
DBNAME=rhino_test
SUPER=postgres

me=$(basename "$0")

die() {
    echo "$me: $*" >&2
    exit 1
}

# destroy runs rm -rf on it: only a plain path under /tmp will do
case $BASE in
    *..*) die "RHINO_PG_BASE must not contain '..' (got '$BASE')" ;;
    /tmp/?*) ;;
    *) die "RHINO_PG_BASE must be a directory under /tmp (got '$BASE')" ;;
esac
case $PORT in
    ''|*[!0-9]*) die "RHINO_PG_PORT must be a port number (got '$PORT')" ;;
esac

if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root, but there is no 'postgres' user to run the server as (install postgresql-15)"
    RUN=(runuser -u postgres --)
    OWNER=postgres
else
    RUN=()
    OWNER=$(id -un)
fi

# Run a command as the user that owns the cluster, from /: postgres may not be
# allowed into the caller's directory.
owner() {
    (cd / && "${RUN[@]}" "$@")
}

running() {
    [ -f "$DATA/PG_VERSION" ] && owner "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

sql() {
    local db=$1
    shift
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$PORT" -U "$SUPER" -d "$db" "$@"
}

# The settings are rewritten on every start, so that editing this script is enough
# to change them; postgresql.conf only includes the file.
write_settings() {
    owner tee "$DATA/rhino-test.conf" >/dev/null <<CONF
# Written by tests/pgcluster.sh at every start; edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCKDIR'
# the daemon tests run several rhino instances, each with a pool of connections
max_connections = 300
shared_buffers = 128MB
# keep durability on: the suites test crash and restart paths, which fsync=off would hide
fsync = on
synchronous_commit = on
log_min_messages = warning
log_line_prefix = '%m [%p] %d '
log_lock_waits = on
timezone = 'UTC'
CONF
}

start() {
    [ -x "$PGBIN/initdb" ] || die "no PostgreSQL 15 binaries in $PGBIN (run scripts/deps)"
    mkdir -p "$BASE"
    chown "$OWNER" "$BASE"
    chmod 700 "$BASE"
    owner mkdir -p "$SOCKDIR"
    if [ ! -f "$DATA/PG_VERSION" ]; then
        echo "$me: creating the cluster in $DATA" >&2
        # --no-sync: a test cluster that dies with the machine is simply re-created
        owner "$PGBIN/initdb" -D "$DATA" -U "$SUPER" --auth=trust -E UTF8 --locale=C.UTF-8 \
            --no-sync >"$BASE/initdb.log" 2>&1 \
            || { cat "$BASE/initdb.log" >&2; die "initdb failed"; }
        echo "include_if_exists = 'rhino-test.conf'" | owner tee -a "$DATA/postgresql.conf" >/dev/null
    fi
    write_settings
    # line 4 of postmaster.pid is the port the server listens on
    if running && [ "$(sed -n 4p "$DATA/postmaster.pid" 2>/dev/null)" != "$PORT" ]; then
        echo "$me: running on another port; restarting on $PORT" >&2
        owner "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
    fi
    if running; then
        owner "$PGBIN/pg_ctl" -D "$DATA" reload >/dev/null
        echo "$me: already running on 127.0.0.1:$PORT (settings reloaded)" >&2
    else
        if ! owner "$PGBIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 start >/dev/null; then
            tail -n 20 "$LOGFILE" >&2 || true
            die "the server did not start (log: $LOGFILE)"
        fi
        echo "$me: started on 127.0.0.1:$PORT (log $LOGFILE)" >&2
    fi
    if [ "$(sql postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")" != 1 ]; then
        sql postgres -c "CREATE DATABASE $DBNAME"
    fi
}

stop() {
    if running; then
        owner "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
        echo "$me: stopped" >&2
    fi
}

# Restart while clients are connected (the fault suite): -m fast or -m immediate.
restart() {
    running || die "not running"
    owner "$PGBIN/pg_ctl" -D "$DATA" -m "$1" -w -t 60 stop >/dev/null
    owner "$PGBIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 start >/dev/null \
        || { tail -n 20 "$LOGFILE" >&2; die "the server did not start again (log: $LOGFILE)"; }
}

# Databases and roles of tests that were killed before they could drop their own.
clean() {
    running || die "not running"
    local n=0 db
    while read -r db; do
        [ -n "$db" ] || continue
        sql postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" && n=$((n + 1))
    done < <(sql postgres -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'rt\\_%'")
    echo "$me: dropped $n leftover test database(s)" >&2
    # roles after the databases: one that owns a database cannot be dropped before it
    n=0
    local role
    while read -r role; do
        [ -n "$role" ] || continue
        sql postgres -c "DROP OWNED BY \"$role\"" -c "DROP ROLE \"$role\"" && n=$((n + 1))
    done < <(sql postgres -tAc "SELECT rolname FROM pg_roles WHERE rolname LIKE 'rt\\_%'")
    echo "$me: dropped $n leftover test role(s)" >&2
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    restart-fast) restart fast ;;
    restart-immediate) restart immediate ;;
    env) echo "postgres://$SUPER@127.0.0.1:$PORT/$DBNAME" ;;
    status)
        if running; then
            echo "running on 127.0.0.1:$PORT, data $DATA"
        else
            echo "not running (data $DATA)"
            exit 1
        fi ;;
    clean) clean ;;
    psql) shift; sql "$DBNAME" "$@" ;;
    destroy)
        stop
        rm -rf -- "$BASE"
        echo "$me: removed $BASE" >&2 ;;
    *)
        echo "usage: $me start|stop|env|status|clean|psql [args]|destroy" >&2
        exit 2 ;;
esac
