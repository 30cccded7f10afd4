/* rh_reaper.h - the reaper process: leases, rescue, promotion, retention. */
#ifndef RH_REAPER_H
#define RH_REAPER_H

#include <stdint.h>

#include "rh_config.h"
#include "rh_shm.h"

/*
 * Run the reaper in the current (freshly forked) process; never returns.
 * SIGUSR1 (from the master, when a worker died) runs a pass at once.
 * SIGTERM ends it; if shm->reaper_last is set (the master stops it for good,
 * no worker being left), it first runs a last pass and marks the node stopped.
 */
void rh_reaper_main(const rh_config_t *cfg, int64_t node_id, rh_shm_t *shm) __attribute__((noreturn));

#endif
