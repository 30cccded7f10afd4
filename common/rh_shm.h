/* rh_shm.h - the master's process table, shared read-only with the reaper. */
#ifndef RH_SHM_H
#define RH_SHM_H

#include "rh_config.h"

/*
 * One entry per worker slot.  Only the master writes; the reaper reads.
 * min_live is the lowest generation of the slot that may still be running:
 * the master raises it when a child exits and sets generation before fork(),
 * so a worker row with a lower generation is certainly a dead process.
 */
typedef struct {
    int pid;
    int generation;
    int min_live;
} rh_shm_slot_t;

typedef struct {
    int           stopping;     /* the master is shutting down for good */
    int           nslots;
    rh_shm_slot_t slot[RH_MAX_PROCESSES];
} rh_shm_t;

rh_shm_t *rh_shm_create(void);   /* anonymous MAP_SHARED, inherited across fork */

#define rh_shm_store(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define rh_shm_load(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)

#endif
