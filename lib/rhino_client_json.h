/* rhino_client_json.h - a JSON syntax check, so that librhino can name a bad payload before sending it. */
#ifndef RHINO_CLIENT_JSON_H
#define RHINO_CLIENT_JSON_H

#include <stddef.h>

/*
 * 0 if s is one JSON value (RFC 8259) with optional white space around it;
 * -1 if not, with *at the byte offset of the problem and *why what it is.
 * Nesting depth is limited only by memory (-1, "out of memory").
 */
int rhino_client_json_check(const char *s, size_t *at, const char **why);

#endif
