/*
 * bad_abi.c - a handler built against another handler ABI.
 *
 * The source is ordinary; Makefile.am compiles it with -DRHINO_ABI_VERSION=99,
 * as if rhino.h had come from a future release, so that the loader's refusal
 * ("built for handler ABI 99") can be tested.
 */
#include <rhino.h>

static int
bad_abi_handler(rhino_job *job)
{
    (void) job;
    return RHINO_OK;
}
RHINO_HANDLER("bad_abi_kind", bad_abi_handler);
