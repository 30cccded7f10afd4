/* rh_main.c - the rhino command line: run the daemon, test a config, print the version. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rh_config.h"
#include "rh_log.h"
#include "rh_master.h"
#define RHINO_INTERNAL 1
#include "rhino.h"

#ifndef RH_DEFAULT_CONFIG
#define RH_DEFAULT_CONFIG "/etc/rhino/rhino.ini"
#endif

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: rhino [-c FILE] [-t] [-V]\n"
            "  -c FILE   configuration file (default " RH_DEFAULT_CONFIG ")\n"
            "  -t        check the configuration and the handlers it names, then exit\n"
            "  -V        print the version and exit\n"
            "rhino runs in the foreground; SIGTERM drains, SIGINT stops fast, SIGHUP reloads.\n"
            "RHINO_DSN, when set, replaces [database] dsn.\n");
}

int
main(int argc, char **argv)
{
    const char  *file = RH_DEFAULT_CONFIG;
    int          test = 0, c;
    char         err[1024];
    rh_config_t *cfg;

    while ((c = getopt(argc, argv, "c:tVh")) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'V':
            printf("rhino %s (handler ABI %d)\n", PACKAGE_VERSION, RHINO_ABI_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rhino: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return 1;
    rh_log_set_role(test ? "check" : "master");
    if (rh_config_load(file, cfg, err, sizeof(err)) < 0) {
        rh_log_error("%s", err);
        return 1;
    }
    rh_log_level = cfg->log_level;
    rh_log_format = cfg->log_format;
    if (test) {
        if (rh_master_check_handlers(cfg, NULL) < 0) {
            fprintf(stderr, "rhino: configuration file %s test failed\n", file);
            return 1;
        }
        printf("rhino: configuration file %s test is successful\n", file);
        rh_config_free(cfg);
        free(cfg);
        return 0;
    }
    return rh_master_run(cfg);
}
