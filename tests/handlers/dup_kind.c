/*
 * dup_kind.c - a second handler for kind "ok", which test_handlers.so also
 * registers: loading the two together must fail rather than pick one.
 */
#include <rhino.h>

static int
dup_ok_handler(rhino_job *job)
{
    (void) job;
    return RHINO_OK;
}
RHINO_HANDLER("ok", dup_ok_handler);
