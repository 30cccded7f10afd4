/* rh_master.h - the master process: supervises workers and the reaper. */
#ifndef RH_MASTER_H
#define RH_MASTER_H

#include "rh_config.h"
#include "rh_pin.h"

/*
 * Take sealed copies of cfg's handler libraries and validate that they
 * load, in a throwaway child so that the master never runs handler code.
 * 0 or -1 (logged why).  On 0, pin (may be NULL) gets the checked copies.
 */
int rh_master_check_handlers(const rh_config_t *cfg, rh_pin_t *pin) __attribute__((warn_unused_result));

/* Run the daemon with cfg (taken over) until it stops; returns the exit code. */
int rh_master_run(rh_config_t *cfg);

#endif
