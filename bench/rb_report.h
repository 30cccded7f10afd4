/* rb_report.h - what rhino-bench prints: JSON lines for machines, a table for people, a progress bar. */
#ifndef RB_REPORT_H
#define RB_REPORT_H

#include <stdio.h>

#include "rb_util.h"

/*
 * path NULL: no JSON; "-": JSON lines on stdout, and the table for people
 * moves to stderr so that stdout stays parseable; else appended to the file.
 */
void  rb_report_open(const char *path);
void  rb_report_close(void);
/* Write the finished record j (one object) as one line; frees it. */
void  rb_report_record(rb_json_t *j);
/* Where the table for people goes. */
FILE *rb_out(void);

/*
 * The progress bar on stderr, only when stderr is a terminal: frac in 0..1,
 * or < 0 when the end is unknown (then only the detail and the time show).
 * Redraws at most 10 times a second.
 */
void rb_progress(const char *label, double frac, const char *detail);
void rb_progress_clear(void);

#endif
