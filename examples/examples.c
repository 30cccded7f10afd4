/*
 * examples.c - example job handlers, built into rhino_examples.so.
 *
 * Copy this file to start your own handlers.  Build it outside this tree with
 *
 *     cc -shared -fPIC -O2 $(pkg-config --cflags rhino) -o my_handlers.so my_handlers.c
 *
 * and list the .so (or the directory holding it) in [handlers] path of
 * rhino.ini.  A handler is a plain function `int fn(rhino_job *job)` that
 * returns
 *
 *     RHINO_OK       the job is done ('completed');
 *     RHINO_RETRY    it failed but may work later: rhino runs it again after an
 *                    exponential backoff ([retry] base_delay, max_delay) until
 *                    the job's max_attempts is used up, then discards it;
 *     RHINO_DISCARD  it can never work (bad payload, unknown customer...):
 *                    the job becomes 'discarded' at once.
 *
 * and registers it for one job kind with RHINO_HANDLER("kind", fn).
 *
 * Rules of the road, because a handler runs inside a rhino worker process:
 *
 *   - It runs synchronously, one job after another, inside the worker's
 *     batch.  A slow handler slows every job in that batch: do short work
 *     here, and hand long work to something built for it.
 *   - Never exit(), abort() or leave a signal handler behind: a crash takes
 *     the whole worker (and its in-flight batch) down.  The jobs are not
 *     lost - the reaper gives them back to the queue - but they are retried.
 *   - Every job is run "at least once": a worker killed after the work but
 *     before rhino recorded the result runs it again.  Make handlers
 *     idempotent (an invoice number, not a counter, decides what is sent).
 *   - The rhino_job pointer and every string it returns are valid only until
 *     the handler returns.  Copy what you want to keep.
 *   - Say why a job failed with rhino_job_set_error(): the text is stored in
 *     the job's last_error column, where `SELECT ... FROM rhino.all_jobs`
 *     and rhinoctl show it.
 *
 * The payload is the job's jsonb value as PostgreSQL prints it, e.g.
 * {"amount": 12.50, "customer": "ACME"}.  These examples pick fields out of it
 * with plain string search so that they need no library; a real handler
 * should use a JSON parser (jansson, json-c, yyjson...) - link it into your
 * .so and rhino will load it with your handler.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rhino.h>

/* ------------------------------------------------------------------------ */
/* Tiny payload helpers (no JSON library; see the note at the top).          */
/* ------------------------------------------------------------------------ */

static const char *
skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/*
 * Find the value of the top-level-looking key KEY in JSON: returns a pointer
 * to the first character of its value (after the colon), or NULL.
 *
 * The search is for "KEY" followed by a colon, so a string *value* that
 * happens to equal the key ("note": "amount") is skipped.  It does not know
 * about nesting: {"lines": [{"amount": 1}]} finds the inner amount.  That is
 * the price of not parsing; good enough for an example.
 */
static const char *
json_find(const char *json, const char *key)
{
    size_t      klen = strlen(key);
    const char *p = json;

    while ((p = strchr(p, '"')) != NULL) {
        if (strncmp(p + 1, key, klen) == 0 && p[1 + klen] == '"') {
            const char *q = skip_blanks(p + klen + 2);
            if (*q == ':')
                return skip_blanks(q + 1);
        }
        p++;
    }
    return NULL;
}

/*
 * Read the number stored under KEY.  Returns 0 and sets *out, or -1 when the
 * key is missing or its value is not a number (a string "12.50" is refused:
 * the payload's producer should be fixed, not guessed at).
 *
 * strtod() follows LC_NUMERIC; rhino never calls setlocale(), so the decimal
 * point is '.', as in JSON.
 */
static int
json_get_number(const char *json, const char *key, double *out)
{
    const char *v = json_find(json, key);
    char       *end;
    double      d;

    if (v == NULL || !(*v == '-' || (*v >= '0' && *v <= '9')))
        return -1;
    errno = 0;
    d = strtod(v, &end);
    if (end == v || errno == ERANGE)
        return -1;
    *out = d;
    return 0;
}

/*
 * Copy the string stored under KEY into buf (escape sequences are copied as
 * they are, not decoded).  Returns the length, or -1 when the key is missing,
 * its value is not a string, or it does not fit in buf.
 */
static int
json_get_string(const char *json, const char *key, char *buf, size_t buflen)
{
    const char *v = json_find(json, key);
    size_t      n = 0;

    if (v == NULL || *v != '"')
        return -1;
    for (v++; *v != '"'; v++) {
        if (*v == '\0' || n + 2 > buflen)
            return -1;
        if (*v == '\\' && v[1] != '\0')
            buf[n++] = *v++;        /* keep the escape pair together */
        buf[n++] = *v;
    }
    buf[n] = '\0';
    return (int) n;
}

/* ------------------------------------------------------------------------ */
/* hello: always succeeds.                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Greets the "name" of the payload ({"name": "Ada"}), or "world".
 *
 * A real handler would send the greeting somewhere; this one only builds it,
 * so that the demo measures rhino and not a mail server.  It does not print
 * it either: 200000 log lines would measure the terminal.
 */
static int
hello(rhino_job *job)
{
    const char *payload = rhino_job_payload(job);
    char        name[64];
    char        greeting[128];
    int         n;

    if (json_get_string(payload, "name", name, sizeof(name)) <= 0)
        snprintf(name, sizeof(name), "world");
    n = snprintf(greeting, sizeof(greeting), "hello, %s (job %lld, attempt %d)",
                 name, (long long) rhino_job_id(job), rhino_job_attempt(job));

    /* Some string work on the result: upper-case the greeting in place. */
    for (int i = 0; i < n && greeting[i] != '\0'; i++)
        if (greeting[i] >= 'a' && greeting[i] <= 'z')
            greeting[i] = (char) (greeting[i] - 'a' + 'A');

    return RHINO_OK;
}
RHINO_HANDLER("hello", hello);

/* ------------------------------------------------------------------------ */
/* flaky: fails now and then, like a real network call.                      */
/* ------------------------------------------------------------------------ */

/* SplitMix64's finalizer: a cheap, well-mixed hash of a 64-bit value. */
static uint64_t
mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x;
}

/*
 * Fails with RHINO_RETRY for about 20% of (job id, attempt) pairs.
 *
 * The choice is a hash, not rand(): running the same job id and attempt
 * again gives the same answer, so a test can predict it, while the attempt
 * number in the hash makes a retried job likely (80%) to succeed the next
 * time.  With the default max_attempts of 25 the odds of a job failing every
 * attempt are 0.2^25: in practice all flaky jobs end up completed, about one
 * in five after at least one retry.
 *
 * Return RHINO_RETRY for errors that may go away (timeouts, a 503, a lock);
 * always say what happened with rhino_job_set_error().
 */
static int
flaky(rhino_job *job)
{
    uint64_t h = mix64((uint64_t) rhino_job_id(job) * 0x9E3779B97F4A7C15ULL
                       + (uint64_t) rhino_job_attempt(job));

    if (h % 100 < 20) {
        rhino_job_set_error(job, "flaky: simulated transient failure on attempt %d of %d",
                            rhino_job_attempt(job), rhino_job_max_attempts(job));
        return RHINO_RETRY;
    }
    return RHINO_OK;
}
RHINO_HANDLER("flaky", flaky);

/* ------------------------------------------------------------------------ */
/* invoice: validates its payload and discards what can never work.          */
/* ------------------------------------------------------------------------ */

#define INVOICE_MAX_AMOUNT 1e9      /* refuse absurd amounts rather than bill them */

/*
 * Payload: {"amount": 129.95, "currency": "EUR", "customer": 42}
 * ("currency" is optional and defaults to EUR).
 *
 * Computes the total with 20% VAT in cents.  A payload that is unusable -
 * no amount, an amount that is not a number, negative or absurd, a currency
 * that is not three capital letters - is RHINO_DISCARD: retrying the same
 * bytes 25 times would fail 25 times.  The error says which field is wrong,
 * so that whoever reads last_error can fix the producer.
 */
static int
invoice(rhino_job *job)
{
    const char *payload = rhino_job_payload(job);
    char        currency[8] = "EUR";
    double      amount;
    long long   net_cents, vat_cents;

    if (json_get_number(payload, "amount", &amount) < 0) {
        rhino_job_set_error(job, "invoice: payload has no numeric \"amount\"");
        return RHINO_DISCARD;
    }
    if (amount < 0) {
        rhino_job_set_error(job, "invoice: negative amount %.2f", amount);
        return RHINO_DISCARD;
    }
    if (amount > INVOICE_MAX_AMOUNT) {
        rhino_job_set_error(job, "invoice: amount %.2f is above the limit %.0f", amount,
                            INVOICE_MAX_AMOUNT);
        return RHINO_DISCARD;
    }
    if (json_find(payload, "currency") != NULL) {
        int n = json_get_string(payload, "currency", currency, sizeof(currency));
        if (n != 3 || currency[0] < 'A' || currency[0] > 'Z' || currency[1] < 'A' ||
            currency[1] > 'Z' || currency[2] < 'A' || currency[2] > 'Z') {
            rhino_job_set_error(job, "invoice: \"currency\" must be a three-letter code like \"EUR\"");
            return RHINO_DISCARD;
        }
    }

    /* Money in integer cents; round half up (amount is >= 0 here). */
    net_cents = (long long) (amount * 100.0 + 0.5);
    vat_cents = (net_cents * 20 + 50) / 100;
    (void) vat_cents;       /* a real handler would now render and send the invoice */

    return RHINO_OK;
}
RHINO_HANDLER("invoice", invoice);
