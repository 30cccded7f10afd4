/* rh_worker.h - a worker process: claims, runs and finalizes jobs. */
#ifndef RH_WORKER_H
#define RH_WORKER_H

#include <stdint.h>

#include "rh_config.h"
#include "rh_pin.h"
#include "rh_shm.h"

/*
 * Run a worker in the current (freshly forked) process and never return.
 * slot and generation identify it within node node_id (the master's row in
 * rhino.nodes).  Exits RH_EXIT_OK after a drain, RH_EXIT_ERROR on trouble the
 * master should answer with a respawn, RH_EXIT_FATAL when it should stop.
 * shm is the master's process table; in its slot the worker publishes the
 * job its handler runs and that job's deadline.  pin holds the master's
 * sealed copies of cfg's handler libraries: the worker loads those, never
 * the files, then closes its fds of them (its mappings keep them).
 */
void rh_worker_main(const rh_config_t *cfg, rh_pin_t *pin, int slot, int generation, int64_t node_id, rh_shm_t *shm)
    __attribute__((noreturn));

#endif
