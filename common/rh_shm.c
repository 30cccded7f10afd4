/* rh_shm.c - shared memory for the process table (see rh_shm.h). */
#include "config.h"

#include <stddef.h>
#include <time.h>
#include <sys/mman.h>

#include "rh_shm.h"

rh_shm_t *
rh_shm_create(void)
{
    void *p = mmap(NULL, sizeof(rh_shm_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

double
rh_mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}
