/*
 * rh_metrics.c - the metrics table in shared memory and its rendering in the
 * Prometheus text format (see rh_metrics.h).
 *
 * Writers (workers, reaper) only ever add with relaxed atomics: nothing is
 * ordered by a counter, and a scrape that sees one increment a little late
 * is still a correct sample of a monotonic counter.  Histogram counts are
 * derived from the buckets of one read, so _count always equals the +Inf
 * bucket of the same scrape.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rh_metrics.h"
#include "rh_shm.h"

rh_metrics_t *rh_metrics;

/* 0.5 ms .. 10 s: a claim round trip is ~1 ms, a slow handler seconds. */
const double rh_hist_bounds[RH_HIST_NBOUNDS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};

#define ADD(p, n)   __atomic_fetch_add((p), (n), __ATOMIC_RELAXED)
#define LOAD(p)     __atomic_load_n((p), __ATOMIC_RELAXED)

static uint32_t
key_hash(const char *q, const char *k)
{
    uint32_t h = 2166136261u;

    for (const unsigned char *p = (const unsigned char *) q; *p; p++)
        h = (h ^ *p) * 16777619u;
    h = (h ^ 0xff) * 16777619u;     /* a separator no name contains at that place */
    for (const unsigned char *p = (const unsigned char *) k; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/*
 * Open addressing, linear probing.  A free entry is claimed by CAS (0 -> 1),
 * filled, then published (2).  A reader that meets an entry in state 1
 * waits a little for it; if the filler died meanwhile the entry stays at 1
 * and is skipped, which may create a second entry for the same names: the
 * master merges equal names when it renders.
 */
/* The entry of the pair (q, k), both already cut to RH_METRIC_NAME - 1 bytes; -1 when the table is full. */
static int
key_find(const char *q, const char *k)
{
    uint32_t h;

    h = key_hash(q, k);
    for (uint32_t i = 0; i < RH_METRIC_KEYS; i++) {
        int              idx = (int) ((h + i) % RH_METRIC_KEYS);
        rh_metric_key_t *e = &rh_metrics->keys[idx];
        uint32_t         st = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);

        if (st == 0) {
            uint32_t expect = 0;

            if (__atomic_compare_exchange_n(&e->state, &expect, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                memcpy(e->queue, q, RH_METRIC_NAME);
                memcpy(e->kind, k, RH_METRIC_NAME);
                __atomic_store_n(&e->state, 2, __ATOMIC_RELEASE);
                return idx;
            }
            st = expect;
        }
        for (int spin = 0; st == 1 && spin < 1000; spin++) {
            sched_yield();
            st = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
        }
        if (st == 2 && strcmp(e->queue, q) == 0 && strcmp(e->kind, k) == 0)
            return idx;
    }
    return -1;
}

/* s names the same entry as c, a name as stored (cut to RH_METRIC_NAME - 1 bytes) */
static int
same_name(const char *s, const char *c)
{
    size_t n = strlen(c);

    return strncmp(s, c, n) == 0 && (s[n] == '\0' || n == RH_METRIC_NAME - 1);
}

int
rh_metrics_key(const char *queue, const char *kind)
{
    /*
     * The last pair looked up, per thread: a worker asks for the same pair
     * for every job of a batch, and the two snprintf and the hash below,
     * per job, were part of the printf work that perf showed as about 40%
     * of a worker's CPU in a drain.
     */
    static _Thread_local char last_q[RH_METRIC_NAME], last_k[RH_METRIC_NAME];
    static _Thread_local int  last_idx = -1;
    static _Thread_local const void *last_table;
    char     q[RH_METRIC_NAME], k[RH_METRIC_NAME];
    int      idx;

    if (rh_metrics == NULL)
        return -1;
    if (queue == NULL)
        queue = "";
    if (kind == NULL)
        kind = "";
    if (last_idx >= 0 && last_table == (const void *) rh_metrics && same_name(queue, last_q) && same_name(kind, last_k))
        return last_idx;
    snprintf(q, sizeof(q), "%s", queue);
    snprintf(k, sizeof(k), "%s", kind);
    idx = key_find(q, k);
    if (idx >= 0) {
        memcpy(last_q, q, sizeof(q));
        memcpy(last_k, k, sizeof(k));
        last_idx = idx;
        last_table = rh_metrics;
    }
    return idx;
}

void
rh_metrics_add(int key, rh_counter_id_t what, uint64_t n)
{
    rh_metric_key_t *e;

    if (rh_metrics == NULL || n == 0)
        return;
    e = key >= 0 && key < RH_METRIC_KEYS ? &rh_metrics->keys[key] : &rh_metrics->other;
    ADD(&e->count[what], n);
}

void
rh_metrics_observe(int slot, rh_hist_id_t which, double seconds)
{
    rh_hist_t *h;
    int        b = 0;

    if (rh_metrics == NULL || slot < 0 || slot >= RH_MAX_PROCESSES)
        return;
    if (seconds < 0)
        seconds = 0;
    h = &rh_metrics->hist[slot][which];
    while (b < RH_HIST_NBOUNDS && seconds > rh_hist_bounds[b])
        b++;
    ADD(&h->bucket[b], (uint64_t) 1);
    ADD(&h->sum_ns, (uint64_t) (seconds * 1e9));
}

uint64_t
rh_metrics_finished(void)
{
    uint64_t n = 0;

    if (rh_metrics == NULL)
        return 0;
    for (int i = 0; i <= RH_METRIC_KEYS; i++) {
        const rh_metric_key_t *e = i < RH_METRIC_KEYS ? &rh_metrics->keys[i] : &rh_metrics->other;

        n += LOAD(&e->count[RH_CNT_COMPLETED]) + LOAD(&e->count[RH_CNT_RETRIED]) +
             LOAD(&e->count[RH_CNT_DISCARDED]);
    }
    return n;
}

int
rh_metrics_parse_listen(const char *s, struct sockaddr_storage *sa, socklen_t *salen, char *err, size_t errlen)
{
    char        host[128];
    const char *colon = strrchr(s, ':'), *p;
    size_t      hlen;
    long        port = 0;

    memset(sa, 0, sizeof(*sa));
    if (colon == NULL || colon[1] == '\0') {
        snprintf(err, errlen, "\"%s\" is not HOST:PORT (for example 127.0.0.1:9187)", s);
        return -1;
    }
    for (p = colon + 1; *p; p++) {
        if (!isdigit((unsigned char) *p) || port > 65535) {
            port = -1;
            break;
        }
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535) {
        snprintf(err, errlen, "\"%s\": the port must be a number from 1 to 65535", s);
        return -1;
    }
    hlen = (size_t) (colon - s);
    if (hlen >= sizeof(host)) {
        snprintf(err, errlen, "\"%s\": the host is too long", s);
        return -1;
    }
    memcpy(host, s, hlen);
    host[hlen] = '\0';

    if (host[0] == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *) sa;

        if (hlen < 3 || host[hlen - 1] != ']') {
            snprintf(err, errlen, "\"%s\": an IPv6 address is written in brackets, as [::1]:9187", s);
            return -1;
        }
        host[hlen - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1) {
            snprintf(err, errlen, "\"%s\": \"%s\" is not an IPv6 address", s, host + 1);
            return -1;
        }
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t) port);
        *salen = sizeof(*a6);
        return 0;
    }
    {
        struct sockaddr_in *a4 = (struct sockaddr_in *) sa;

        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t) port);
        *salen = sizeof(*a4);
        if (host[0] == '\0' || strcmp(host, "*") == 0) {
            a4->sin_addr.s_addr = htonl(INADDR_ANY);
            return 0;
        }
        if (strcmp(host, "localhost") == 0) {
            a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return 0;
        }
        if (inet_pton(AF_INET, host, &a4->sin_addr) == 1)
            return 0;
    }
    snprintf(err, errlen, "\"%s\": the host must be an IPv4 address, an IPv6 address in brackets, "
             "localhost or * (all interfaces); names are not resolved", s);
    return -1;
}

/* ---------------------------------------------------------------------- */
/* rendering                                                              */

typedef struct {
    char  *s;
    size_t len, cap;
    int    oom;
} out_t;

static void
out_printf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
out_printf(out_t *o, const char *fmt, ...)
{
    va_list ap;
    int     n;

    if (o->oom)
        return;
    for (;;) {
        size_t room = o->cap - o->len;

        va_start(ap, fmt);
        n = vsnprintf(o->s ? o->s + o->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = 1;
            return;
        }
        if ((size_t) n < room) {
            o->len += (size_t) n;
            return;
        }
        {
            size_t cap = o->cap ? o->cap * 2 : 16384;
            char  *grown;

            while (cap < o->len + (size_t) n + 1)
                cap *= 2;
            grown = realloc(o->s, cap);
            if (grown == NULL) {
                o->oom = 1;
                return;
            }
            o->s = grown;
            o->cap = cap;
        }
    }
}

/* A label value: backslash, double quote and newline escaped, as the format asks. */
static const char *
label(const char *v, char *buf, size_t size)
{
    size_t o = 0;

    for (const char *p = v; *p && o + 3 < size; p++) {
        if (*p == '\\' || *p == '"') {
            buf[o++] = '\\';
            buf[o++] = *p;
        } else if (*p == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *p;
        }
    }
    buf[o] = '\0';
    return buf;
}

static void
header(out_t *o, const char *name, const char *type, const char *help)
{
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

typedef struct {
    const char *queue, *kind;
    uint64_t    count[RH_CNT__COUNT];
} key_snap_t;

static const struct {
    const char *name, *help;
} counter_names[RH_CNT__COUNT] = {
    [RH_CNT_CLAIMED] = { "rhino_jobs_claimed_total", "Jobs claimed by this node's workers." },
    [RH_CNT_COMPLETED] = { "rhino_jobs_completed_total", "Jobs whose completion this node's workers committed." },
    [RH_CNT_RETRIED] = { "rhino_jobs_retried_total", "Failed runs committed as retryable (backoff)." },
    [RH_CNT_DISCARDED] = { "rhino_jobs_discarded_total",
                           "Jobs committed as discarded by a worker (RHINO_DISCARD or max_attempts)." },
    [RH_CNT_STALE] = { "rhino_finalizes_stale_total",
                       "Outcomes rejected because the job had been rescued and claimed again." },
    [RH_CNT_SNOOZED] = { "rhino_jobs_snoozed_total", "Runs committed as snoozed (RHINO_SNOOZE)." },
    [RH_CNT_CANCELLED] = { "rhino_jobs_cancelled_total",
                           "Jobs committed as cancelled by a worker (rhino.cancel: not run, or stopped)." },
};

static const struct {
    const char *name, *help;
} hist_names[RH_HIST__COUNT] = {
    [RH_HIST_CLAIM] = { "rhino_claim_duration_seconds", "Claim round trip, from send to its sync." },
    [RH_HIST_FINALIZE] = { "rhino_finalize_duration_seconds", "Finalize round trip, from send to its sync." },
    [RH_HIST_RUN] = { "rhino_job_duration_seconds", "Handler run time." },
};

char *
rh_metrics_render(const rh_metrics_gauges_t *g, size_t *len)
{
    out_t      o = { 0 };
    key_snap_t snap[RH_METRIC_KEYS + 1];
    int        nsnap = 0;
    char       l1[2 * RH_METRIC_NAME + 4], l2[2 * RH_METRIC_NAME + 4];

    header(&o, "rhino_build_info", "gauge", "Always 1; the version is a label.");
    out_printf(&o, "rhino_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
    header(&o, "rhino_workers_configured", "gauge", "Worker processes the configuration asks for.");
    out_printf(&o, "rhino_workers_configured %d\n", g->workers_configured);
    header(&o, "rhino_workers_alive", "gauge", "Worker processes running.");
    out_printf(&o, "rhino_workers_alive %d\n", g->workers_alive);
    header(&o, "rhino_workers_ready", "gauge", "Worker processes connected and registered.");
    out_printf(&o, "rhino_workers_ready %d\n", g->workers_ready);
    header(&o, "rhino_reaper_up", "gauge", "1 while the reaper runs and is connected.");
    out_printf(&o, "rhino_reaper_up %d\n", g->reaper_up);
    if (rh_metrics == NULL)
        goto done;

    header(&o, "rhino_restarts_total", "counter", "Child processes restarted after dying on their own.");
    out_printf(&o, "rhino_restarts_total %" PRIu64 "\n", LOAD(&rh_metrics->restarts));
    header(&o, "rhino_crashes_total", "counter", "Workers that died while a handler ran.");
    out_printf(&o, "rhino_crashes_total %" PRIu64 "\n", LOAD(&rh_metrics->crashes));
    header(&o, "rhino_timeouts_total", "counter", "Workers killed because a handler passed its deadline.");
    out_printf(&o, "rhino_timeouts_total %" PRIu64 "\n", LOAD(&rh_metrics->timeouts));
    header(&o, "rhino_jobs_rescued_total", "counter",
           "Running jobs of dead or lease-expired workers made available again by this node's reaper.");
    out_printf(&o, "rhino_jobs_rescued_total %" PRIu64 "\n", LOAD(&rh_metrics->rescued));
    header(&o, "rhino_db_round_trips_total", "counter",
           "Rounds the workers sent to the database (a finalize and a claim travel in one).");
    out_printf(&o, "rhino_db_round_trips_total %" PRIu64 "\n", LOAD(&rh_metrics->round_trips));
    header(&o, "rhino_wakeups_total", "counter", "Idle workers woken by a new-job notification.");
    out_printf(&o, "rhino_wakeups_total %" PRIu64 "\n", LOAD(&rh_metrics->wakeups));

    /* the (queue, kind) table, equal names merged (see rh_metrics_key) */
    for (int i = 0; i <= RH_METRIC_KEYS; i++) {
        const rh_metric_key_t *e = i < RH_METRIC_KEYS ? &rh_metrics->keys[i] : &rh_metrics->other;
        const char            *q = "_other", *k = "_other";
        key_snap_t            *s = NULL;

        if (i < RH_METRIC_KEYS) {
            if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != 2)
                continue;
            q = e->queue;
            k = e->kind;
        } else {
            int any = 0;
            for (int c = 0; c < RH_CNT__COUNT; c++)
                any |= LOAD(&e->count[c]) != 0;
            if (!any)
                continue;
        }
        for (int j = 0; j < nsnap && s == NULL; j++)
            if (strcmp(snap[j].queue, q) == 0 && strcmp(snap[j].kind, k) == 0)
                s = &snap[j];
        if (s == NULL) {
            s = &snap[nsnap++];
            memset(s, 0, sizeof(*s));
            s->queue = q;
            s->kind = k;
        }
        for (int c = 0; c < RH_CNT__COUNT; c++)
            s->count[c] += LOAD(&e->count[c]);
    }
    for (int c = 0; c < RH_CNT__COUNT; c++) {
        header(&o, counter_names[c].name, "counter", counter_names[c].help);
        for (int j = 0; j < nsnap; j++)
            out_printf(&o, "%s{queue=\"%s\",kind=\"%s\"} %" PRIu64 "\n", counter_names[c].name,
                       label(snap[j].queue, l1, sizeof(l1)), label(snap[j].kind, l2, sizeof(l2)),
                       snap[j].count[c]);
    }

    for (int hi = 0; hi < RH_HIST__COUNT; hi++) {
        uint64_t b[RH_HIST_NBUCKETS] = { 0 }, sum_ns = 0, cum = 0;

        for (int s = 0; s < RH_MAX_PROCESSES; s++) {
            const rh_hist_t *h = &rh_metrics->hist[s][hi];
            for (int k = 0; k < RH_HIST_NBUCKETS; k++)
                b[k] += LOAD(&h->bucket[k]);
            sum_ns += LOAD(&h->sum_ns);
        }
        header(&o, hist_names[hi].name, "histogram", hist_names[hi].help);
        for (int k = 0; k < RH_HIST_NBUCKETS; k++) {
            cum += b[k];
            if (k < RH_HIST_NBOUNDS)
                out_printf(&o, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", hist_names[hi].name, rh_hist_bounds[k], cum);
            else
                out_printf(&o, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", hist_names[hi].name, cum);
        }
        out_printf(&o, "%s_sum %.9f\n", hist_names[hi].name, (double) sum_ns / 1e9);
        out_printf(&o, "%s_count %" PRIu64 "\n", hist_names[hi].name, cum);
    }

    /* queue depth: a consistent copy under the reaper's seqlock */
    {
        static rh_metric_queue_t qs[RH_METRIC_QUEUES];
        int                      nq = -1;
        double                   at = 0;
        int64_t                  limit = 0;

        for (int tries = 0; tries < 100 && nq < 0; tries++) {
            uint32_t s1 = __atomic_load_n(&rh_metrics->qseq, __ATOMIC_ACQUIRE), s2;

            if (s1 & 1) {
                sched_yield();
                continue;
            }
            nq = rh_metrics->nqueues;
            if (nq < 0 || nq > RH_METRIC_QUEUES)
                nq = 0;
            at = rh_metrics->qupdated;
            limit = rh_metrics->depth_limit;
            memcpy(qs, rh_metrics->queues, sizeof(qs[0]) * (size_t) nq);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            s2 = __atomic_load_n(&rh_metrics->qseq, __ATOMIC_RELAXED);
            if (s1 != s2)
                nq = -1;
        }
        if (nq >= 0 && at > 0) {
            header(&o, "rhino_queue_depth", "gauge", "Available jobs per queue (read by the reaper).");
            for (int i = 0; i < nq; i++)
                out_printf(&o, "rhino_queue_depth{queue=\"%s\"} %" PRId64 "\n", label(qs[i].name, l1, sizeof(l1)),
                           qs[i].depth);
            header(&o, "rhino_queue_depth_limit", "gauge",
                   "rhino_queue_depth counts up to this many jobs per queue ([metrics] depth_limit; 0 = all).");
            out_printf(&o, "rhino_queue_depth_limit %" PRId64 "\n", limit);
            header(&o, "rhino_queue_oldest_age_seconds", "gauge",
                   "Seconds since the oldest available job of the queue became due (0 when empty).");
            for (int i = 0; i < nq; i++)
                out_printf(&o, "rhino_queue_oldest_age_seconds{queue=\"%s\"} %.3f\n",
                           label(qs[i].name, l1, sizeof(l1)), qs[i].oldest_age);
            header(&o, "rhino_queue_stats_age_seconds", "gauge", "Seconds since the queue gauges were read.");
            out_printf(&o, "rhino_queue_stats_age_seconds %.3f\n", rh_mono_now() - at);
        }
    }
done:
    if (o.oom) {
        free(o.s);
        return NULL;
    }
    *len = o.len;
    return o.s;
}
