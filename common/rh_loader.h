/* rh_loader.h - loading handler shared objects and finding a kind's handler. */
#ifndef RH_LOADER_H
#define RH_LOADER_H

#include <stddef.h>

#include "rh_job.h"
#include "rh_pin.h"

typedef struct {
    const char      *kind;      /* the registry's own copy */
    rhino_handler_fn fn;
    unsigned         flags;     /* RHINO_F_* */
    const char      *so;        /* path it came from (not the copy's /proc/self/fd/N) */
} rh_handler_t;

typedef struct {
    rh_handler_t *handlers;     /* sorted by kind */
    int           n;
    void        **dl;           /* dlopen handles */
    char        **so_paths;
    int           ndl;
} rh_registry_t;

/*
 * Called with each .so path just before it is dlopen()ed, if set: the
 * master's handler check uses it to name the library whose constructor hangs.
 */
extern void (*rh_loader_on_load)(const char *path);

/*
 * Load the copies in pin (rh_pin_take), in its order.  A dlopen failure
 * (undefined symbol...), a .so with no RHINO_HANDLER, an ABI mismatch or two
 * handlers for one kind fail the whole load with a message naming the
 * library's path and what to do.  pin's fds may be released afterwards.
 */
int  rh_loader_load_pinned(rh_registry_t *reg, const rh_pin_t *pin, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/*
 * The same from paths (a .so file, or a directory whose *.so files are
 * loaded in name order): takes the copies, loads them, releases them.
 */
int  rh_loader_load(rh_registry_t *reg, char *const *paths, int npaths, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* The handler of kind, or NULL: never NULL for a kind that rh_loader_kinds lists. */
const rh_handler_t *rh_loader_find(const rh_registry_t *reg, const char *kind);
/* The loaded kinds as "a, b, c" (for errors about unknown kinds). */
void rh_loader_kinds(const rh_registry_t *reg, char *buf, size_t len);
void rh_loader_unload(rh_registry_t *reg);

#endif
