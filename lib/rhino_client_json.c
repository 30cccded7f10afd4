/*
 * rhino_client_json.c - a JSON syntax check for librhino's payloads.
 *
 * Why check on the client when the server parses the jsonb anyway: a bad
 * payload among thousands must be named ("jobs[812]"), and the server's
 * error does not say which element of an array or which COPY row failed in
 * a way that survives translation; and an error found here leaves the
 * caller's transaction intact, where a failed statement would abort it.
 * The server stays the judge: what passes here can still be refused there
 * (\u0000, which jsonb cannot store), with the server's message.
 *
 * Iterative, with a stack of open containers, so that deep nesting cannot
 * overflow the C stack.
 */
#include <stdlib.h>

#include "rhino_client_json.h"

typedef enum { J_VALUE, J_KEY, J_AFTER } json_state_t;

static const char *
skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int
is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* p at the opening quote; returns the character after the closing one, or NULL (*why set). */
static const char *
scan_string(const char *p, const char **why)
{
    for (p++;; p++) {
        unsigned char c = (unsigned char) *p;

        if (c == '"')
            return p + 1;
        if (c == '\0') {
            *why = "unterminated string";
            return NULL;
        }
        if (c < 0x20) {
            *why = "control character in a string (escape it)";
            return NULL;
        }
        if (c == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!is_hex(p[i])) {
                        *why = "bad \\u escape in a string";
                        return NULL;
                    }
                p += 4;
            } else if (*p == '\0' || !(*p == '"' || *p == '\\' || *p == '/' || *p == 'b' || *p == 'f' ||
                                       *p == 'n' || *p == 'r' || *p == 't')) {
                *why = "bad escape in a string";
                return NULL;
            }
        }
    }
}

static const char *
scan_number(const char *p, const char **why)
{
    if (*p == '-')
        p++;
    if (*p == '0') {
        p++;
    } else if (is_digit(*p)) {
        while (is_digit(*p))
            p++;
    } else {
        *why = "bad number";
        return NULL;
    }
    if (*p == '.') {
        p++;
        if (!is_digit(*p)) {
            *why = "bad number (no digit after the point)";
            return NULL;
        }
        while (is_digit(*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!is_digit(*p)) {
            *why = "bad number (no digit in the exponent)";
            return NULL;
        }
        while (is_digit(*p))
            p++;
    }
    return p;
}

static const char *
scan_word(const char *p, const char *word, const char **why)
{
    for (; *word; word++, p++)
        if (*p != *word) {
            *why = "unexpected character";
            return NULL;
        }
    return p;
}

int
rhino_client_json_check(const char *s, size_t *at, const char **why)
{
    char        *stack = NULL, *grown;
    size_t       depth = 0, cap = 0;
    const char  *p = skip_ws(s), *q;
    json_state_t st = J_VALUE;
    int          rc = -1;

    *why = NULL;
    for (;;) {
        if (st == J_KEY) {
            if (*p != '"') {
                *why = *p == '\0' ? "unexpected end" : "expected a string as the key";
                goto out;
            }
            /* q, as for a value: p must keep the key's start for *at, not the NULL of a bad string */
            if ((q = scan_string(p, why)) == NULL)
                goto out;       /* *at: where the token starts */
            p = skip_ws(q);
            if (*p != ':') {
                *why = "expected ':' after the key";
                goto out;
            }
            p = skip_ws(p + 1);
            st = J_VALUE;
            continue;
        }
        if (st == J_VALUE) {
            switch (*p) {
            case '{':
            case '[':
                if (depth == cap) {
                    cap = cap ? cap * 2 : 32;
                    if ((grown = realloc(stack, cap)) == NULL) {
                        *why = "out of memory";
                        goto out;
                    }
                    stack = grown;
                }
                stack[depth++] = *p;
                p = skip_ws(p + 1);
                if ((stack[depth - 1] == '{' && *p == '}') || (stack[depth - 1] == '[' && *p == ']')) {
                    depth--;
                    p++;
                    st = J_AFTER;
                } else {
                    st = stack[depth - 1] == '{' ? J_KEY : J_VALUE;
                }
                continue;
            case '"':
                q = scan_string(p, why);
                break;
            case 't':
                q = scan_word(p, "true", why);
                break;
            case 'f':
                q = scan_word(p, "false", why);
                break;
            case 'n':
                q = scan_word(p, "null", why);
                break;
            case '\0':
                *why = "unexpected end";
                goto out;
            default:
                if (*p == '-' || is_digit(*p)) {
                    q = scan_number(p, why);
                    break;
                }
                *why = "unexpected character";
                goto out;
            }
            if (q == NULL)
                goto out;       /* *at: where the token starts */
            p = q;
            st = J_AFTER;
            continue;
        }
        /* J_AFTER: a value ended */
        p = skip_ws(p);
        if (depth == 0) {
            if (*p != '\0') {
                *why = "more after the value";
                goto out;
            }
            rc = 0;
            goto out;
        }
        if (*p == ',') {
            p = skip_ws(p + 1);
            st = stack[depth - 1] == '{' ? J_KEY : J_VALUE;
        } else if ((stack[depth - 1] == '{' && *p == '}') || (stack[depth - 1] == '[' && *p == ']')) {
            depth--;
            p++;
        } else {
            *why = *p == '\0' ? "unexpected end"
                 : stack[depth - 1] == '{' ? "expected ',' or '}'" : "expected ',' or ']'";
            goto out;
        }
    }

out:
    *at = (size_t) (p - s);
    free(stack);
    return rc;
}
