/*
 * cron_cases.h - cron expressions shared by check_cron.c (the C parser) and
 * check_schedule.c (rhino.cron_check() in SQL): both must accept the good
 * ones and refuse the bad ones with exactly these messages.
 */
#ifndef RT_CRON_CASES_H
#define RT_CRON_CASES_H

/* Each bad expression and the exact message, which names the field (the SQL side says the same). */
static const char *const rt_cron_bad[][2] = {
    { "", "cron expression \"\": empty; write five fields (minute hour day-of-month month day-of-week) or a "
          "macro such as @daily" },
    { "   ", "cron expression \"   \": empty; write five fields (minute hour day-of-month month day-of-week) "
             "or a macro such as @daily" },
    { "* * * *", "cron expression \"* * * *\": 4 fields; expected 5: minute hour day-of-month month day-of-week" },
    { "0 * * * * *", "cron expression \"0 * * * * *\": 6 fields; expected 5: minute hour day-of-month month "
                     "day-of-week" },
    { "61 * * * *", "cron expression \"61 * * * *\": minute field \"61\": 61 is out of range 0-59" },
    { "* 24 * * *", "cron expression \"* 24 * * *\": hour field \"24\": 24 is out of range 0-23" },
    { "* * 0 * *", "cron expression \"* * 0 * *\": day-of-month field \"0\": 0 is out of range 1-31" },
    { "* * 32 * *", "cron expression \"* * 32 * *\": day-of-month field \"32\": 32 is out of range 1-31" },
    { "* * * 13 *", "cron expression \"* * * 13 *\": month field \"13\": 13 is out of range 1-12" },
    { "* * * 0 *", "cron expression \"* * * 0 *\": month field \"0\": 0 is out of range 1-12" },
    { "* * * * 8", "cron expression \"* * * * 8\": day-of-week field \"8\": 8 is out of range 0-7" },
    { "99999999999 * * * *", "cron expression \"99999999999 * * * *\": minute field \"99999999999\": "
                             "99999999999 is out of range 0-59" },
    { "* * * foo *", "cron expression \"* * * foo *\": month field \"foo\": \"foo\" is not a month name "
                     "(jan..dec)" },
    { "* * * * monday", "cron expression \"* * * * monday\": day-of-week field \"monday\": \"monday\" is not a "
                        "day name (sun..sat)" },
    { "mon * * * *", "cron expression \"mon * * * *\": minute field \"mon\": \"mon\" is not a number" },
    { "* * * * jan", "cron expression \"* * * * jan\": day-of-week field \"jan\": \"jan\" is not a day name "
                     "(sun..sat)" },
    { "1,,2 * * * *", "cron expression \"1,,2 * * * *\": minute field \"1,,2\": empty item in the list" },
    { "1, * * * *", "cron expression \"1, * * * *\": minute field \"1,\": empty item in the list" },
    { "30-10 * * * *", "cron expression \"30-10 * * * *\": minute field \"30-10\": range \"30-10\" goes "
                       "backwards (wrap-around ranges are not supported)" },
    { "* * * * fri-mon", "cron expression \"* * * * fri-mon\": day-of-week field \"fri-mon\": range "
                         "\"fri-mon\" goes backwards (wrap-around ranges are not supported)" },
    { "*/0 * * * *", "cron expression \"*/0 * * * *\": minute field \"*/0\": step 0 is out of range 1-59" },
    { "* */24 * * *", "cron expression \"* */24 * * *\": hour field \"*/24\": step 24 is out of range 1-23" },
    { "*/ * * * *", "cron expression \"*/ * * * *\": minute field \"*/\": \"*/\" is not *, a value, a range "
                    "A-B, or one of them with /STEP" },
    { "*/x * * * *", "cron expression \"*/x * * * *\": minute field \"*/x\": \"*/x\" is not *, a value, a "
                     "range A-B, or one of them with /STEP" },
    { "1-/2 * * * *", "cron expression \"1-/2 * * * *\": minute field \"1-/2\": \"1-/2\" is not *, a value, "
                      "a range A-B, or one of them with /STEP" },
    { "61! * * * *", "cron expression \"61! * * * *\": minute field \"61!\": \"61!\" is not *, a value, a "
                     "range A-B, or one of them with /STEP" },
    { "** * * * *", "cron expression \"** * * * *\": minute field \"**\": \"**\" is not *, a value, a range "
                    "A-B, or one of them with /STEP" },
    { "? * * * *", "cron expression \"? * * * *\": minute field \"?\": \"?\" is not *, a value, a range A-B, "
                   "or one of them with /STEP" },
    { "@reboot", "cron expression \"@reboot\": unknown macro \"@reboot\"; use @hourly, @daily, @weekly, "
                 "@monthly or @yearly" },
    { "@daily 5", "cron expression \"@daily 5\": unknown macro \"@daily 5\"; use @hourly, @daily, @weekly, "
                  "@monthly or @yearly" },
    { "0 0 30 2 *", "cron expression \"0 0 30 2 *\": day-of-month field \"30\" names no day that month field "
                    "\"2\" has" },
    { "0 0 31 apr,jun,sep,nov *", "cron expression \"0 0 31 apr,jun,sep,nov *\": day-of-month field \"31\" "
                                  "names no day that month field \"apr,jun,sep,nov\" has" },
};

static const char *const rt_cron_good[] = {
    "* * * * *", "*/15 0-6/2 1,15 jan-mar,Dec MON-fri", "0 0 * * 7", "0 0 * * 5-7", "5/20 * * * *",
    "0 0 */10 * *", "10-20/30 * * * *", " \t007,7,07\t*  * *   *\n", "0 0 */2 * 1", "@yearly", "@annually",
    "@monthly", "@weekly", "@daily", "@midnight", "@hourly", " @DAILY ", "0 0 30 2 mon", "0 0 29 2 *",
    "59 23 31 12 *", "0 0 13 * */7", "0 0 29 2 */7", "0 9-17/2 * * mon-fri", "1-59/58 0 1 jan-DEC/11 sun-sat/3",
};

#endif
