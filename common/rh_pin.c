/*
 * rh_pin.c - pinning the handler code: private, sealed copies of the
 * libraries a config names.
 *
 * Why: a worker used to dlopen() the handler paths themselves, whenever it
 * started.  So a worker respawned after a crash, a kill or a timeout loaded
 * whatever the files held at that moment, even after a reload that had been
 * refused (a broken library then stopped rhino, a rebuilt one ran beside
 * the old code without any reload being accepted), and a file overwritten
 * in place (cp new.so x.so keeps the inode) changed the pages mapped into
 * the running workers under them: SIGBUS in one, handler kinds that no
 * longer matched their own registry in the others.
 *
 * Instead the master takes a copy of every library when it accepts a set
 * (at the start, and at each reload before checking it), into a memfd that
 * is then sealed against any write, growth or shrink.  The check child
 * loads the copies, and only the copies (so what is checked is exactly
 * what runs later); the workers inherit the fds through fork() and dlopen()
 * them as /proc/self/fd/N; the files on disk are not read again until the
 * next SIGHUP.  Only bytes are read here: the master still runs no handler
 * code.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "rh_pin.h"

/*
 * MFD_EXEC (Linux 6.3): says that the copy will be mapped executable, which
 * a kernel with vm.memfd_noexec = 1 would otherwise refuse (it makes plain
 * memfds non-executable).  Older kernels reject the flag: then without it.
 */
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

#ifndef RH_PKGLIBDIR
#define RH_PKGLIBDIR "/usr/local/lib/rhino"
#endif

/*
 * etc/rhino.service gives the service its own empty /tmp and /var/tmp
 * (PrivateTmp=yes) and makes /home, /root and /run/user empty and
 * inaccessible (ProtectHome=yes): a handler kept there is "No such file or
 * directory" to the service while ls shows it.  systemd sets INVOCATION_ID
 * for the processes of every unit, so under systemd the error says where to
 * look.  "" otherwise.
 */
static const char *
sandbox_hint(int e)
{
    if ((e != ENOENT && e != EACCES) || getenv("INVOCATION_ID") == NULL)
        return "";
    return "; running under systemd: the unit's sandbox may hide this path (PrivateTmp=yes gives the "
           "service its own /tmp and /var/tmp, ProtectHome=yes hides /home, /root and /run/user), so keep "
           "handlers in a directory such as " RH_PKGLIBDIR "/handlers";
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* A sealed memfd holding the bytes of the file at path; -1 with err set. */
static int
copy_sealed(const char *path, char *err, size_t errlen)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char        name[200], buf[65536];
    int         in, fd;
    ssize_t     r;

    in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        int e = errno;

        snprintf(err, errlen, "handler %s: %s (check [handlers] path%s)", path, strerror(e), sandbox_hint(e));
        return -1;
    }
    /* the name shows in /proc/PID/maps as "/memfd:rhino:x.so (deleted)" */
    snprintf(name, sizeof(name), "rhino:%s", base);
    /* CLOEXEC: fork() passes it to the children; a program a handler execs gets none */
    fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (fd < 0 && errno == EINVAL)
        fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        snprintf(err, errlen, "handler %s: memfd_create() failed while copying it: %s", path, strerror(errno));
        close(in);
        return -1;
    }
    /* to the end, not to a size read first: a file that grows or shrinks meanwhile is copied as read */
    while ((r = read(in, buf, sizeof(buf))) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "handler %s: cannot read it: %s", path, strerror(errno));
            goto fail;
        }
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(fd, buf + off, (size_t) (r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                snprintf(err, errlen, "handler %s: cannot copy it: %s", path, strerror(errno));
                goto fail;
            }
            off += w;
        }
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
        snprintf(err, errlen, "handler %s: sealing its copy failed: %s", path, strerror(errno));
        goto fail;
    }
    close(in);
    return fd;
fail:
    close(in);
    close(fd);
    return -1;
}

static int
add(rh_pin_t *pin, const char *path, char *err, size_t errlen)
{
    char **pg = realloc(pin->paths, sizeof(char *) * ((size_t) pin->n + 1));
    int   *fg;

    if (pg)
        pin->paths = pg;
    fg = pg ? realloc(pin->fds, sizeof(int) * ((size_t) pin->n + 1)) : NULL;
    if (fg)
        pin->fds = fg;
    if (!pg || !fg || !(pin->paths[pin->n] = strdup(path))) {
        snprintf(err, errlen, "handler %s: out of memory", path);
        return -1;
    }
    if ((pin->fds[pin->n] = copy_sealed(path, err, errlen)) < 0) {
        free(pin->paths[pin->n]);
        return -1;
    }
    pin->n++;
    return 0;
}

/* Every *.so of dir, in name order. */
static int
add_dir(rh_pin_t *pin, const char *dir, char *err, size_t errlen)
{
    DIR           *d = opendir(dir);
    struct dirent *e;
    char         **names = NULL;
    size_t         n = 0, cap = 0;
    int            rc = 0;

    if (d == NULL) {
        int saved = errno;

        snprintf(err, errlen, "handler directory %s: %s%s", dir, strerror(saved), sandbox_hint(saved));
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
        if (rc == 0 && add(pin, names[i], err, errlen) < 0)
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

int
rh_pin_take(rh_pin_t *pin, char *const *paths, int npaths, char *err, size_t errlen)
{
    memset(pin, 0, sizeof(*pin));
    for (int i = 0; i < npaths; i++) {
        struct stat st;
        int         rc;

        if (stat(paths[i], &st) < 0) {
            int e = errno;

            snprintf(err, errlen, "handler %s: %s (check [handlers] path%s)", paths[i], strerror(e),
                     sandbox_hint(e));
            rh_pin_release(pin);
            return -1;
        }
        rc = S_ISDIR(st.st_mode) ? add_dir(pin, paths[i], err, errlen) : add(pin, paths[i], err, errlen);
        if (rc < 0) {
            rh_pin_release(pin);
            return -1;
        }
    }
    return 0;
}

const char *
rh_pin_path(const rh_pin_t *pin, int i, char *buf, size_t len)
{
    snprintf(buf, len, "/proc/self/fd/%d", pin->fds[i]);
    return buf;
}

void
rh_pin_release(rh_pin_t *pin)
{
    for (int i = 0; i < pin->n; i++) {
        close(pin->fds[i]);
        free(pin->paths[i]);
    }
    free(pin->paths);
    free(pin->fds);
    memset(pin, 0, sizeof(*pin));
}
