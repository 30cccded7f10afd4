/*
 * rh_loader.c - the handler registry.
 *
 * Handlers live in shared objects built against rhino.h.  RHINO_HANDLER puts
 * a pointer to each definition into the object's "rhino_handlers" section,
 * and the header's weak rhino_module_handlers() returns that section's
 * bounds; dlsym() on the object's own handle finds that object's copy.
 *
 * The loader runs in each worker after fork, and once in a throwaway child
 * of the master to validate a config before it is used: the master itself
 * never runs handler code.  Both load the master's sealed copies of the
 * libraries (rh_pin.c), never the files themselves, so every worker of a
 * config runs exactly the bytes its check accepted; errors still name the
 * files.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rh_loader.h"
#include "rh_log.h"
#include "rh_pin.h"

typedef const rhino_handler_def *const *(*rh_module_fn)(size_t *n);

void (*rh_loader_on_load)(const char *path);

static int
cmp_handler(const void *a, const void *b)
{
    return strcmp(((const rh_handler_t *) a)->kind, ((const rh_handler_t *) b)->kind);
}

/*
 * dlerror() names the file as it was opened, /proc/self/fd/N: the part
 * after that name, for a message that names the library's own path.
 */
static const char *
dl_reason(const char *dlpath)
{
    const char *e = dlerror();
    size_t      n = strlen(dlpath);

    if (e == NULL)
        return "unknown error";
    if (strncmp(e, dlpath, n) == 0 && e[n] == ':')
        e += n + 1 + (e[n + 1] == ' ');
    return e;
}

/* Load the library at path, as its copy dlpath. */
static int
load_one(rh_registry_t *reg, const char *path, const char *dlpath, char *err, size_t errlen)
{
    void                           *dl;
    rh_module_fn                    fn;
    const rhino_handler_def *const *defs;
    size_t                          n = 0;
    rh_handler_t                   *grown;
    void                          **dlgrown;
    char                          **pgrown;

    if (rh_loader_on_load)
        rh_loader_on_load(path);
    /* RTLD_NOW: an undefined symbol is found here, not in the middle of a batch */
    dl = dlopen(dlpath, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        snprintf(err, errlen, "handler %s: cannot load: %s", path, dl_reason(dlpath));
        return -1;
    }
    *(void **) &fn = dlsym(dl, "rhino_module_handlers");
    if (fn == NULL) {
        snprintf(err, errlen, "handler %s: missing symbol rhino_module_handlers: "
                 "not a Rhino handler (declare handlers with RHINO_HANDLER from rhino.h)", path);
        dlclose(dl);
        return -1;
    }
    defs = fn(&n);
    if (defs == NULL || n == 0) {
        snprintf(err, errlen, "handler %s: no RHINO_HANDLER in this shared object", path);
        dlclose(dl);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (defs[i] == NULL || defs[i]->abi != RHINO_ABI_VERSION) {
            snprintf(err, errlen, "handler %s: built for handler ABI %u, but this rhino speaks ABI %d: "
                     "rebuild it against this rhino's rhino.h", path,
                     defs[i] ? (unsigned) defs[i]->abi : 0u, RHINO_ABI_VERSION);
            dlclose(dl);
            return -1;
        }
        if (defs[i]->flags & ~(uint32_t) RHINO_F_TX) {
            snprintf(err, errlen, "handler %s: RHINO_HANDLER at %s:%d has unknown flags 0x%x: "
                     "rebuild it against this rhino's rhino.h", path, defs[i]->file ? defs[i]->file : "?",
                     defs[i]->line, (unsigned) defs[i]->flags);
            dlclose(dl);
            return -1;
        }
        if (defs[i]->kind == NULL || defs[i]->kind[0] == '\0' || defs[i]->fn == NULL) {
            snprintf(err, errlen, "handler %s: RHINO_HANDLER at %s:%d has an empty kind or no function",
                     path, defs[i]->file ? defs[i]->file : "?", defs[i]->line);
            dlclose(dl);
            return -1;
        }
    }
    grown = realloc(reg->handlers, sizeof(rh_handler_t) * ((size_t) reg->n + n));
    dlgrown = realloc(reg->dl, sizeof(void *) * ((size_t) reg->ndl + 1));
    pgrown = realloc(reg->so_paths, sizeof(char *) * ((size_t) reg->ndl + 1));
    if (grown)
        reg->handlers = grown;
    if (dlgrown)
        reg->dl = dlgrown;
    if (pgrown)
        reg->so_paths = pgrown;
    if (!grown || !dlgrown || !pgrown || !(reg->so_paths[reg->ndl] = strdup(path))) {
        snprintf(err, errlen, "handler %s: out of memory", path);
        dlclose(dl);
        return -1;
    }
    reg->dl[reg->ndl] = dl;
    for (size_t i = 0; i < n; i++) {
        /*
         * The registry keeps its own copy of the kind: its sorted order and
         * the "loaded:" list of an error must not depend on bytes mapped
         * from a file.  A library overwritten in place once changed them
         * under a running worker, and every lookup missed kinds it listed.
         */
        if ((reg->handlers[reg->n].kind = strdup(defs[i]->kind)) == NULL) {
            snprintf(err, errlen, "handler %s: out of memory", path);
            reg->ndl++;         /* unloaded with the rest */
            return -1;
        }
        reg->handlers[reg->n].fn = defs[i]->fn;
        reg->handlers[reg->n].flags = defs[i]->flags;
        reg->handlers[reg->n].so = reg->so_paths[reg->ndl];
        reg->n++;
    }
    reg->ndl++;
    return 0;
}

int
rh_loader_load_pinned(rh_registry_t *reg, const rh_pin_t *pin, char *err, size_t errlen)
{
    memset(reg, 0, sizeof(*reg));
    for (int i = 0; i < pin->n; i++) {
        char dlpath[64];

        if (load_one(reg, pin->paths[i], rh_pin_path(pin, i, dlpath, sizeof(dlpath)), err, errlen) < 0) {
            rh_loader_unload(reg);
            return -1;
        }
    }
    if (reg->n == 0) {
        snprintf(err, errlen, "no handlers loaded (check [handlers] path)");
        return -1;
    }
    qsort(reg->handlers, (size_t) reg->n, sizeof(rh_handler_t), cmp_handler);
    for (int i = 1; i < reg->n; i++)
        if (strcmp(reg->handlers[i - 1].kind, reg->handlers[i].kind) == 0) {
            snprintf(err, errlen, "two handlers for kind \"%s\": in %s and in %s; keep one",
                     reg->handlers[i].kind, reg->handlers[i - 1].so, reg->handlers[i].so);
            rh_loader_unload(reg);
            return -1;
        }
    return 0;
}

int
rh_loader_load(rh_registry_t *reg, char *const *paths, int npaths, char *err, size_t errlen)
{
    rh_pin_t pin;
    int      rc;

    if (rh_pin_take(&pin, paths, npaths, err, errlen) < 0) {
        memset(reg, 0, sizeof(*reg));
        return -1;
    }
    rc = rh_loader_load_pinned(reg, &pin, err, errlen);
    /* the mappings dlopen() made keep the copies alive */
    rh_pin_release(&pin);
    return rc;
}

const rh_handler_t *
rh_loader_find(const rh_registry_t *reg, const char *kind)
{
    rh_handler_t        key = { kind, NULL, 0, NULL };
    const rh_handler_t *h;
    static int          told;

    if (reg->n == 0)
        return NULL;
    h = bsearch(&key, reg->handlers, (size_t) reg->n, sizeof(rh_handler_t), cmp_handler);
    if (h != NULL)
        return h;
    /*
     * A miss is normally an unknown kind (retried with "no handler for kind
     * ... (loaded: ...)").  Should the sorted table ever be out of order,
     * a kind it lists would be missed and that message contradict itself
     * on every job: scan it (a few kinds), use the hit, say so once.
     */
    for (int i = 0; i < reg->n; i++)
        if (strcmp(reg->handlers[i].kind, kind) == 0) {
            if (!told++)
                rh_log_error("handler registry: the lookup missed kind \"%s\" (from %s) that this process "
                             "loaded; its table is out of order (a bug: please report it); "
                             "found it by a scan", kind, reg->handlers[i].so);
            return &reg->handlers[i];
        }
    return NULL;
}

void
rh_loader_kinds(const rh_registry_t *reg, char *buf, size_t len)
{
    size_t o = 0;

    buf[0] = '\0';
    for (int i = 0; i < reg->n && o < len; i++)
        o += (size_t) snprintf(buf + o, len - o, "%s%s", i ? ", " : "", reg->handlers[i].kind);
}

void
rh_loader_unload(rh_registry_t *reg)
{
    for (int i = 0; i < reg->n; i++)
        free((char *) reg->handlers[i].kind);
    for (int i = 0; i < reg->ndl; i++) {
        dlclose(reg->dl[i]);
        free(reg->so_paths[i]);
    }
    free(reg->dl);
    free(reg->so_paths);
    free(reg->handlers);
    memset(reg, 0, sizeof(*reg));
}
