/* rh_pin.h - private, sealed copies of the handler libraries a config names. */
#ifndef RH_PIN_H
#define RH_PIN_H

#include <stddef.h>

/*
 * A handler set as taken at one moment: each library's original path (what
 * logs and errors name) and a sealed memfd holding a copy of its bytes (what
 * is dlopen()ed, as rh_pin_path() names it).  Directories are expanded, their
 * *.so files in name order, so the list is the load order.
 */
typedef struct {
    int    n;
    char **paths;
    int   *fds;
} rh_pin_t;

/*
 * Copy every library that paths (files, or directories of *.so files) name
 * into pin.  0, or -1 with err naming the file and the problem (pin then
 * holds nothing).  Only bytes are read: no handler code runs here.
 */
int  rh_pin_take(rh_pin_t *pin, char *const *paths, int npaths, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* "/proc/self/fd/N" for copy i, into buf. */
const char *rh_pin_path(const rh_pin_t *pin, int i, char *buf, size_t len);
/* Close the copies and free the set; a zeroed or released set is left as it is. */
void rh_pin_release(rh_pin_t *pin);

#endif
