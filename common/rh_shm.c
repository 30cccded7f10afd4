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

int
rh_shm_cancel_listed(rh_shm_t *shm, int64_t id)
{
    uint32_t head = rh_shm_load(&shm->cancel_head);

    for (uint32_t k = 0; k < RH_SHM_CANCELS && k < head; k++)
        if (rh_shm_load(&shm->cancel_ids[(head - 1 - k) % RH_SHM_CANCELS]) == id)
            return 1;
    return 0;
}

void
rh_shm_cancel_add(rh_shm_t *shm, int64_t id)
{
    uint32_t head = rh_shm_load(&shm->cancel_head);

    if (rh_shm_cancel_listed(shm, id))
        return;
    rh_shm_store(&shm->cancel_ids[head % RH_SHM_CANCELS], id);
    rh_shm_store(&shm->cancel_head, head + 1);
}
