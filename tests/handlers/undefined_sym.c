/*
 * undefined_sym.c - a handler that calls a function defined nowhere.
 *
 * Shared objects may link with unresolved symbols, so this builds; the
 * loader's dlopen(RTLD_NOW) must then fail with "undefined symbol" at start
 * instead of the first job of this kind crashing a worker.
 */
#include <rhino.h>

extern int rhino_test_no_such_function(void);

static int
call_missing(rhino_job *job)
{
    (void) job;
    return rhino_test_no_such_function() ? RHINO_RETRY : RHINO_OK;
}
RHINO_HANDLER("undefined_sym_kind", call_missing);
