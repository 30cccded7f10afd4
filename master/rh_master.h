/* rh_master.h - the master process: supervises workers and the reaper. */
#ifndef RH_MASTER_H
#define RH_MASTER_H

#include "rh_config.h"

/*
 * Validate that the handlers of cfg load, in a throwaway child so that the
 * master never runs handler code.  0 or -1 (the child logged why).
 */
int rh_master_check_handlers(const rh_config_t *cfg) __attribute__((warn_unused_result));

/* Run the daemon with cfg (taken over) until it stops; returns the exit code. */
int rh_master_run(rh_config_t *cfg);

#endif
