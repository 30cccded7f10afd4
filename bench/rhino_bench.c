/*
 * rhino_bench.c - rhino-bench: the command line.  Reads the options, checks
 * them and the database, then hands over to one of the modes (rb_modes.c).
 *
 *   rhino-bench insert|drain|trickle|scale|bloat [options]
 *
 * docs/benchmarks.md says what each mode measures and how; man rhino-bench
 * lists the options.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rh_migrate.h"
#include "rb_cluster.h"
#include "rb_facts.h"
#include "rb_modes.h"
#include "rb_pg.h"
#include "rb_report.h"
#include "rb_rhino.h"
#include "rb_util.h"

#ifndef RB_SRCDIR
#define RB_SRCDIR ""
#endif

/* Exit codes: as rhinoctl's, plus 3 for "measured, but the jobs did not all end as they should". */
#define RB_EXIT_OK      0
#define RB_EXIT_ERROR   1
#define RB_EXIT_USAGE   2
#define RB_EXIT_CHECK   3

#define RB_MAX_SETS     32

static void
usage(FILE *fp)
{
    fputs("usage: rhino-bench MODE [options]\n"
          "\n"
          "Modes (each starts its own rhino against an empty rhino.jobs):\n"
          "  insert    N jobs by COPY in one transaction, by the C API's rhino_enqueue_many() in calls\n"
          "            of --per-call jobs, then by SQL rhino.enqueue() from --clients connections in\n"
          "            transactions of --tx calls; jobs/s of each\n"
          "  drain     enqueue N (COPY), start rhino, time until none is available or running;\n"
          "            jobs/s, and rhino's CPU, WAL, commits and round trips per job\n"
          "  trickle   --rate jobs/s for --seconds; latency from the enqueue call to the handler's\n"
          "            start and to the finalize (p50/p90/p99/max), the first --warmup s left out\n"
          "  scale     the drain rate of the first --first jobs with --sizes jobs queued\n"
          "  bloat     dead tuples and sizes after a drain of N, then a --window s with a snapshot\n"
          "            held open under load: the drain rate and the sizes at its end\n"
          "\n"
          "Options:\n"
          "  --dsn DSN             the database (else RHINO_DSN); rhino-bench migrates it and\n"
          "                        TRUNCATEs rhino.jobs and rhino.jobs_done: use a database of its own.\n"
          "                        Neither given: a throwaway PostgreSQL cluster under $TMPDIR or /tmp,\n"
          "                        deleted at exit (server binaries from $RHINO_PG_BIN, else\n"
          "                        /usr/lib/postgresql/N/bin, else the PATH)\n"
          "  -n, --jobs N          jobs (insert, drain: 250k; bloat: 1M); k and M suffixes work\n"
          "  -w, --workers LIST    [worker] processes (2); drain takes a list: 1,2,4\n"
          "  -b, --batch LIST      [worker] batch_size (1000); drain takes a list: 100,500,1000\n"
          "      --reps R          repeat each measurement R times (1)\n"
          "      --clients K       insert: rhino.enqueue() connections (4); trickle: enqueue connections\n"
          "                        (16; each enqueue is one autocommit call, sent when its slot comes)\n"
          "      --tx N            insert: rhino.enqueue() calls per transaction (100)\n"
          "      --per-call N      insert: jobs per rhino_enqueue_many() call, each call its own\n"
          "                        transaction (1000)\n"
          "      --no-pipeline     insert: one round trip per call instead of one per transaction\n"
          "      --no-prepare      insert, trickle: send rhino.enqueue() unnamed, parsed and planned\n"
          "                        at every call, instead of prepared once per connection\n"
          "      --rate R          trickle: jobs per second (500)\n"
          "      --seconds T       trickle: how long (10)\n"
          "      --warmup S        trickle: the first S seconds are not counted (1)\n"
          "      --sizes LIST      scale: jobs queued (250k,1M,10M)\n"
          "      --first K         scale: the jobs timed at each size (250k)\n"
          "      --window S        bloat: seconds with the snapshot held (60)\n"
          "      --retention S     [retention] completed for rhino (86400; 0 keeps no history, and\n"
          "                        then completion latency and counts are not available)\n"
          "      --set S.KEY=VAL   one more line of rhino's config, e.g. --set worker.poll_interval=0.01\n"
          "      --no-metrics      do not serve /metrics (round trips per job become n/a)\n"
          "      --no-analyze      no ANALYZE of rhino.jobs after loading it (the planner then sees\n"
          "                        whatever statistics autovacuum left)\n"
          "      --rhino PATH      the rhino to run (else next to rhino-bench, ../sbin, $PATH)\n"
          "      --handlers PATH   bench_handlers.so (else found next to rhino-bench or installed)\n"
          "      --queue NAME      the queue of the bench jobs (rhino-bench)\n"
          "      --json FILE       append one JSON line per measurement (- for stdout; the table\n"
          "                        for people then goes to stderr)\n"
          "      --label TEXT      stored in every JSON record\n"
          "      --timeout S       give up on any single wait after S seconds (600)\n"
          "      --keep-tmp        keep the generated configs and rhino's logs\n"
          "  -V, --version         print the version\n"
          "  -h, --help            this text\n"
          "\n"
          "Exit: 0 measured; 1 an error; 2 a usage error; 3 measured, but some job did not end\n"
          "completed exactly once.  See docs/benchmarks.md.\n", fp);
}

#define usage_error rb_die_usage

static double
parse_seconds(const char *opt, const char *s, double min, double max)
{
    char  *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !(v >= min && v <= max))
        usage_error("%s: \"%s\" is not a number from %g to %g", opt, s, min, max);
    return v;
}

static long long
parse_one(const char *opt, const char *s, long long min, long long max)
{
    long long v;

    rb_parse_list(opt, s, &v, 1, min, max);
    return v;
}

/* --set SECTION.KEY=VALUE: the shape only; rhino -t judges the rest and names the key. */
static void
check_set(const char *s)
{
    const char *dot = strchr(s, '.'), *eq = strchr(s, '=');

    if (dot == NULL || eq == NULL || dot == s || eq < dot + 2 || dot - s >= 64 || eq - dot - 1 >= 64 ||
        strchr(s, '\n') != NULL || strchr(eq + 1, '[') != NULL || strlen(eq + 1) >= 1024)
        usage_error("--set %s: expected SECTION.KEY=VALUE on one line, like worker.poll_interval=0.01", s);
    /* the connection is --dsn's; [database]'s other keys (listen, prepare) are fair game */
    if (strncmp(s, "database.dsn", 12) == 0 || strncmp(s, "database.listen_dsn", 19) == 0)
        usage_error("--set %s: give the database with --dsn or RHINO_DSN", s);
}

static void
check_queue(const char *q)
{
    size_t n = strlen(q);

    if (n == 0 || n > 255 || strspn(q, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
        usage_error("--queue %s: use 1 to 255 letters, digits, '.', '_' or '-'", q);
}

static void
on_signal(int sig)
{
    (void) sig;
    rb_interrupted = 1;
}

static void
at_exit(void)
{
    rb_rhino_cleanup();
    rb_report_close();
    rb_cluster_stop();          /* after rhino: it was the cluster's client */
}

/*
 * The database must be one rhino-bench may empty: it holds no job of
 * another queue and no other rhino works on it.  Then the schema is
 * brought to this build's version, as `rhinoctl migrate` would.
 */
static void
prepare_database(rb_opts_t *o)
{
    char        err[2048];
    int         applied;
    const char *qp[1] = { o->queue };
    PGresult   *res;

    if (rh_migrate(o->conn, &applied, err, sizeof(err)) < 0)
        rb_die("migrating the schema failed: %s", err);
    if (rb_pg_int(o->conn, RB_SQL_FOREIGN_JOBS, qp) > 0)
        rb_die("the database holds jobs of queues other than \"%s\"; rhino-bench empties rhino.jobs and "
               "rhino.jobs_done between measurements, so give it a database of its own (createdb rhino_bench; "
               "--dsn .../rhino_bench)", o->queue);
    res = rb_pg_run(o->conn, RB_SQL_LIVE_NODES, NULL);
    if (PQgetvalue(res, 0, 0)[0] != '\0') {
        char names[512];

        snprintf(names, sizeof(names), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        rb_die("rhino is running on this database (node %s); stop it first, or wait for its lease to run out "
               "if it died", names);
    }
    PQclear(res);
}

int
main(int argc, char **argv)
{
    enum {
        O_REPS = 256, O_CLIENTS, O_TX, O_PER_CALL, O_NO_PIPELINE, O_NO_PREPARE, O_RATE, O_SECONDS, O_WARMUP, O_SIZES, O_FIRST, O_WINDOW,
        O_RETENTION, O_SET, O_NO_METRICS, O_RHINO, O_HANDLERS, O_QUEUE, O_JSON, O_LABEL, O_TIMEOUT, O_KEEP, O_DSN,
        O_NO_ANALYZE
    };
    static const struct option longopts[] = {
        { "dsn", required_argument, NULL, O_DSN },
        { "jobs", required_argument, NULL, 'n' },
        { "workers", required_argument, NULL, 'w' },
        { "batch", required_argument, NULL, 'b' },
        { "reps", required_argument, NULL, O_REPS },
        { "clients", required_argument, NULL, O_CLIENTS },
        { "tx", required_argument, NULL, O_TX },
        { "per-call", required_argument, NULL, O_PER_CALL },
        { "no-pipeline", no_argument, NULL, O_NO_PIPELINE },
        { "no-prepare", no_argument, NULL, O_NO_PREPARE },
        { "rate", required_argument, NULL, O_RATE },
        { "seconds", required_argument, NULL, O_SECONDS },
        { "warmup", required_argument, NULL, O_WARMUP },
        { "sizes", required_argument, NULL, O_SIZES },
        { "first", required_argument, NULL, O_FIRST },
        { "window", required_argument, NULL, O_WINDOW },
        { "retention", required_argument, NULL, O_RETENTION },
        { "set", required_argument, NULL, O_SET },
        { "no-metrics", no_argument, NULL, O_NO_METRICS },
        { "no-analyze", no_argument, NULL, O_NO_ANALYZE },
        { "rhino", required_argument, NULL, O_RHINO },
        { "handlers", required_argument, NULL, O_HANDLERS },
        { "queue", required_argument, NULL, O_QUEUE },
        { "json", required_argument, NULL, O_JSON },
        { "label", required_argument, NULL, O_LABEL },
        { "timeout", required_argument, NULL, O_TIMEOUT },
        { "keep-tmp", no_argument, NULL, O_KEEP },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    static const char *modes[] = { "insert", "drain", "trickle", "scale", "bloat" };
    rb_opts_t    o;
    const char  *sets[RB_MAX_SETS];
    const char  *rhino_opt = NULL, *handlers_opt = NULL, *json = NULL;
    const char  *workers_opt = NULL, *batch_opt = NULL;
    int          c, rc = 0, n_given = 0, keep = 0, clients_given = 0;
    int          (*run)(rb_opts_t *) = NULL;

    memset(&o, 0, sizeof(o));
    o.queue = "rhino-bench";
    o.label = "";
    o.reps = 1;
    o.clients = 4;
    o.tx = 100;
    o.per_call = 1000;
    o.pipeline = 1;
    o.prepare = 1;
    o.rate = 500;
    o.seconds = 10;
    o.warmup = 1;
    o.first = 250000;
    o.window = 60;
    o.retention = 86400;
    o.timeout = 600;
    o.analyze = 1;
#ifdef HAVE_LIBMICROHTTPD
    o.metrics = 1;              /* the rhino beside us serves /metrics; --no-metrics for one that cannot */
#endif
    o.sets = sets;
    o.sizes[0] = 250000;
    o.sizes[1] = 1000000;
    o.sizes[2] = 10000000;
    o.nsizes = 3;

    while ((c = getopt_long(argc, argv, "n:w:b:Vh", longopts, NULL)) != -1) {
        switch (c) {
        case O_DSN:         o.dsn = optarg; break;
        case 'n':           o.n = parse_one("--jobs", optarg, 1, 1000000000LL); n_given = 1; break;
        case 'w':           workers_opt = optarg; break;
        case 'b':           batch_opt = optarg; break;
        case O_REPS:        o.reps = (int) parse_one("--reps", optarg, 1, 1000); break;
        case O_CLIENTS:     o.clients = (int) parse_one("--clients", optarg, 1, 256); clients_given = 1; break;
        case O_TX:          o.tx = (int) parse_one("--tx", optarg, 1, 100000); break;
        case O_PER_CALL:    o.per_call = (int) parse_one("--per-call", optarg, 1, 1000000); break;
        case O_NO_PIPELINE: o.pipeline = 0; break;
        case O_NO_PREPARE:  o.prepare = 0; break;
        case O_RATE:        o.rate = parse_seconds("--rate", optarg, 0.1, 1e6); break;
        case O_SECONDS:     o.seconds = parse_seconds("--seconds", optarg, 0.1, 86400); break;
        case O_WARMUP:      o.warmup = parse_seconds("--warmup", optarg, 0, 86400); break;
        case O_SIZES:       o.nsizes = rb_parse_list("--sizes", optarg, o.sizes, RB_MAX_LIST, 1, 1000000000LL); break;
        case O_FIRST:       o.first = parse_one("--first", optarg, 1, 1000000000LL); break;
        case O_WINDOW:      o.window = parse_seconds("--window", optarg, 0.1, 86400); break;
        case O_RETENTION:   o.retention = parse_seconds("--retention", optarg, 0, 86400.0 * 3650); break;
        case O_SET:
            check_set(optarg);
            if (o.nsets == RB_MAX_SETS)
                usage_error("--set: at most %d", RB_MAX_SETS);
            sets[o.nsets++] = optarg;
            break;
        case O_NO_METRICS:  o.metrics = 0; break;
        case O_NO_ANALYZE:  o.analyze = 0; break;
        case O_RHINO:       rhino_opt = optarg; break;
        case O_HANDLERS:    handlers_opt = optarg; break;
        case O_QUEUE:       check_queue(optarg); o.queue = optarg; break;
        case O_JSON:        json = optarg; break;
        case O_LABEL:       o.label = optarg; break;
        case O_TIMEOUT:     o.timeout = parse_seconds("--timeout", optarg, 1, 86400); break;
        case O_KEEP:        keep = 1; break;
        case 'V':           printf("rhino-bench %s\n", PACKAGE_VERSION); return RB_EXIT_OK;
        case 'h':           usage(stdout); return RB_EXIT_OK;
        default:            fputs("(rhino-bench --help lists the modes and options)\n", stderr); return RB_EXIT_USAGE;
        }
    }
    if (optind >= argc)
        usage_error("which mode? insert, drain, trickle, scale or bloat");
    o.mode = argv[optind];
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(o.mode, modes[i]) == 0) {
            int (*const fns[])(rb_opts_t *) = { rb_mode_insert, rb_mode_drain, rb_mode_trickle, rb_mode_scale,
                                                rb_mode_bloat };
            run = fns[i];
        }
    }
    if (run == NULL)
        usage_error("unknown mode \"%s\": insert, drain, trickle, scale or bloat", o.mode);
    if (optind + 1 < argc)
        usage_error("unexpected argument \"%s\" after the mode", argv[optind + 1]);

    /* the lists: several values only where the mode sweeps over them */
    o.workers[0] = 2;
    o.nworkers = 1;
    o.batches[0] = 1000;
    o.nbatches = 1;
    if (workers_opt != NULL)
        o.nworkers = rb_parse_list("--workers", workers_opt, o.workers, RB_MAX_LIST, 1, 256);
    if (batch_opt != NULL)
        o.nbatches = rb_parse_list("--batch", batch_opt, o.batches, RB_MAX_LIST, 1, 1000);
    if (strcmp(o.mode, "drain") != 0 && (o.nworkers > 1 || o.nbatches > 1))
        usage_error("only drain takes a list of --workers or --batch sizes");
    if (!n_given)
        o.n = strcmp(o.mode, "bloat") == 0 ? 1000000 : 250000;
    if (strcmp(o.mode, "trickle") == 0) {
        /* a synchronous commit takes a few ms: at 500/s one connection would fall behind */
        if (!clients_given)
            o.clients = 16;
        if (o.rate * o.seconds < 1)
            usage_error("--rate %g for --seconds %g is less than one job", o.rate, o.seconds);
        if (o.warmup >= o.seconds)
            usage_error("--warmup %g leaves nothing of --seconds %g to measure", o.warmup, o.seconds);
    }
    if (strcmp(o.mode, "scale") == 0 && o.nsizes < 2)
        usage_error("--sizes: scale compares at least two sizes");
    if (strcmp(o.mode, "bloat") == 0 && o.retention <= 0)
        usage_error("bloat counts the window's completions in rhino.jobs_done: --retention must be above 0");

    if (o.dsn == NULL) {
        o.dsn = getenv("RHINO_DSN");
        if (o.dsn != NULL && *o.dsn == '\0')
            usage_error("RHINO_DSN is set but empty: give it a DSN, or unset it for a throwaway cluster");
    }

    /* a signal handler only sets the flag; the loops notice it and stop rhino on their way out */
    {
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
    }
    rb_rhino_locate(argv[0], rhino_opt, handlers_opt);
    rb_tmpdir_keep(keep);
    atexit(at_exit);
    if (o.dsn == NULL) {
        /* no database given: one of our own, stopped and deleted by at_exit */
        static char throwaway[1024];

        rb_cluster_start(throwaway, sizeof(throwaway));
        o.dsn = throwaway;
    }
    rb_report_open(json);

    o.conn = rb_pg_connect(o.dsn);
    prepare_database(&o);
    rb_facts_collect(o.conn, RB_SRCDIR);
    fprintf(rb_out(), "rhino-bench %s: %s\nrhino: %s, handlers: %s\n", o.mode, rb_facts_line(), rb_rhino_path(),
            rb_rhino_handlers());
    rc = run(&o);
    PQfinish(o.conn);
    if (rc != 0) {
        fprintf(stderr, "rhino-bench: some jobs did not end completed exactly once (see \"check\" above)\n");
        return RB_EXIT_CHECK;
    }
    return RB_EXIT_OK;
}
