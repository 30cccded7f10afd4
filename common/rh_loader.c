/*
 * rh_loader.c - the handler registry.
 *
 * Handlers live in shared objects built against rhino.h.  RHINO_HANDLER puts
 * a pointer to each definition into the object's "rhino_handlers" section,
 * and the header's weak rhino_module_handlers() returns that section's
 * bounds; dlsym() on the object's own handle finds that object's copy.
 *
 * The loader runs in each worker after fork (so a SIGHUP roll loads the new
 * code), and once in a throwaway child of the master to validate a config
 * before it is used: the master itself never runs handler code.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rh_loader.h"

typedef const rhino_handler_def *const *(*rh_module_fn)(size_t *n);

void (*rh_loader_on_load)(const char *path);

static int
cmp_handler(const void *a, const void *b)
{
    return strcmp(((const rh_handler_t *) a)->kind, ((const rh_handler_t *) b)->kind);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static int
load_one(rh_registry_t *reg, const char *path, char *err, size_t errlen)
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
    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        snprintf(err, errlen, "handler %s: cannot load: %s", path, dlerror());
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
        reg->handlers[reg->n].kind = defs[i]->kind;
        reg->handlers[reg->n].fn = defs[i]->fn;
        reg->handlers[reg->n].flags = defs[i]->flags;
        reg->handlers[reg->n].so = reg->so_paths[reg->ndl];
        reg->n++;
    }
    reg->ndl++;
    return 0;
}

static int
load_dir(rh_registry_t *reg, const char *dir, char *err, size_t errlen)
{
    DIR           *d = opendir(dir);
    struct dirent *e;
    char         **names = NULL;
    size_t         n = 0, cap = 0;
    int            rc = 0;

    if (d == NULL) {
        snprintf(err, errlen, "handler directory %s: %s", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0)
            continue;
        if (n == cap) {
            char **g = realloc(names, sizeof(char *) * (cap = cap ? cap * 2 : 8));
            if (g == NULL)
                break;
            names = g;
        }
        names[n] = malloc(strlen(dir) + len + 2);
        if (names[n] == NULL)
            break;
        sprintf(names[n], "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    if (n == 0) {
        snprintf(err, errlen, "handler directory %s: holds no .so file", dir);
        rc = -1;
    }
    if (n > 0)
        qsort(names, n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && load_one(reg, names[i], err, errlen) < 0)
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

int
rh_loader_load(rh_registry_t *reg, char *const *paths, int npaths, char *err, size_t errlen)
{
    memset(reg, 0, sizeof(*reg));
    for (int i = 0; i < npaths; i++) {
        struct stat st;
        int         rc;

        if (stat(paths[i], &st) < 0) {
            snprintf(err, errlen, "handler %s: %s (check [handlers] path)", paths[i], strerror(errno));
            rh_loader_unload(reg);
            return -1;
        }
        rc = S_ISDIR(st.st_mode) ? load_dir(reg, paths[i], err, errlen)
                                 : load_one(reg, paths[i], err, errlen);
        if (rc < 0) {
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

const rh_handler_t *
rh_loader_find(const rh_registry_t *reg, const char *kind)
{
    rh_handler_t key = { kind, NULL, 0, NULL };

    if (reg->n == 0)
        return NULL;
    return bsearch(&key, reg->handlers, (size_t) reg->n, sizeof(rh_handler_t), cmp_handler);
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
    for (int i = 0; i < reg->ndl; i++) {
        dlclose(reg->dl[i]);
        free(reg->so_paths[i]);
    }
    free(reg->dl);
    free(reg->so_paths);
    free(reg->handlers);
    memset(reg, 0, sizeof(*reg));
}
