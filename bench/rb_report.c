/* rb_report.c - JSON lines, the table for people, and the progress bar of rhino-bench. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rb_report.h"

static FILE  *json_fp;
static int    json_is_stdout;
static int    bar_tty = -1;     /* -1: not looked at yet */
static int    bar_shown;
static double bar_last, bar_start;
static char   bar_label[64];

void
rb_report_open(const char *path)
{
    rb_before_message = rb_progress_clear;
    if (path == NULL)
        return;
    if (strcmp(path, "-") == 0) {
        json_fp = stdout;
        json_is_stdout = 1;
        return;
    }
    /* appended: a compare run collects the records of many invocations in one file */
    json_fp = fopen(path, "a");
    if (json_fp == NULL)
        rb_die("--json %s: cannot open it for appending: %s", path, strerror(errno));
}

void
rb_report_close(void)
{
    if (json_fp != NULL && !json_is_stdout && fclose(json_fp) != 0)
        rb_warn("writing the JSON file failed: %s", strerror(errno));
    json_fp = NULL;
}

FILE *
rb_out(void)
{
    return json_is_stdout ? stderr : stdout;
}

void
rb_report_record(rb_json_t *j)
{
    if (j->depth != 0)
        rb_die("internal error: a JSON record was left open");
    if (json_fp != NULL) {
        fputs(j->b.data, json_fp);
        fputc('\n', json_fp);
        /* each line whole and at once, so that a reader never sees half a record */
        if (fflush(json_fp) != 0)
            rb_die("writing a JSON record failed: %s", strerror(errno));
    }
    rb_buf_free(&j->b);
}

void
rb_progress(const char *label, double frac, const char *detail)
{
    double now = rb_mono();
    char   bar[32];
    int    width = (int) sizeof(bar) - 1;

    if (bar_tty < 0)
        bar_tty = isatty(STDERR_FILENO);
    if (!bar_tty)
        return;
    if (!bar_shown || strcmp(label, bar_label) != 0) {
        snprintf(bar_label, sizeof(bar_label), "%s", label);
        bar_start = now;
        bar_last = 0;
    } else if (now - bar_last < 0.1) {
        return;
    }
    bar_last = now;
    if (frac >= 0) {
        int fill = (int) (frac > 1 ? width : frac * width);

        memset(bar, '#', (size_t) fill);
        memset(bar + fill, '.', (size_t) (width - fill));
        bar[width] = '\0';
        fprintf(stderr, "\r\033[K%-14s [%s] %3.0f%% %6.1f s %s", label, bar, frac > 1 ? 100 : frac * 100,
                now - bar_start, detail ? detail : "");
    } else {
        fprintf(stderr, "\r\033[K%-14s %6.1f s %s", label, now - bar_start, detail ? detail : "");
    }
    fflush(stderr);
    bar_shown = 1;
}

void
rb_progress_clear(void)
{
    if (bar_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        bar_shown = 0;
    }
}
