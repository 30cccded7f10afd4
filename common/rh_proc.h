/* rh_proc.h - process roles and exit codes shared by the master and its children. */
#ifndef RH_PROC_H
#define RH_PROC_H

typedef enum {
    RH_ROLE_MASTER = 0,
    RH_ROLE_WORKER,
    RH_ROLE_REAPER
} rh_role_t;

/*
 * Child exit codes.  RH_EXIT_FATAL (as nginx's 2) means "respawning will not
 * help" (schema missing, handler vanished): the master stops and exits 1
 * rather than crash-looping.  Any other non-zero code is respawned with backoff.
 */
#define RH_EXIT_OK      0
#define RH_EXIT_ERROR   1
#define RH_EXIT_FATAL   2

#endif
