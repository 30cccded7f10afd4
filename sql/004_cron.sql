-- Rhino schema, version 4: periodic jobs (cron schedules).
--
--   rhino.schedules       one row per schedule: its cron expression, the job it
--                         enqueues, what to do with fires missed while no rhino ran.
--                         Written by rhino.schedule() (any language, in the caller's
--                         transaction), by `rhinoctl schedule`, and by every rhino at
--                         start and SIGHUP for the [schedule NAME] sections of its config.
--   rhino.schedule_fires  one row per fire time that enqueued a job.  Its primary key
--                         (schedule_name, fire_time) is what makes each fire time enqueue
--                         exactly once however many rhino hosts run: the reaper inserts
--                         the fire row and the job in ONE statement, the job only if the
--                         fire row was new.
--
-- Fire times are computed in C by the reaper (common/rh_cron.c, UTC only); the
-- expression is validated here too, by rhino.cron_check(), which implements the same
-- grammar with the same messages, so that a bad expression is refused in the caller's
-- transaction and can never reach the table.

-- Raises invalid_parameter_value naming the bad field, or returns true.  The grammar:
-- five fields (minute hour day-of-month month day-of-week), each a comma list of '*',
-- N or A-B, any of them with /STEP ("N/STEP" is N to the field's end); names jan..dec
-- and sun..sat; day-of-week 0-7 (0 and 7 are Sunday); or @hourly, @daily, @midnight,
-- @weekly, @monthly, @yearly, @annually.  Keep in step with rh_cron_parse().
CREATE FUNCTION rhino.cron_check(expr text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
AS $fn$
DECLARE
    fname  CONSTANT text[] := ARRAY['minute', 'hour', 'day-of-month', 'month', 'day-of-week'];
    flo    CONSTANT int[]  := ARRAY[0, 0, 1, 1, 0];
    fhi    CONSTANT int[]  := ARRAY[59, 23, 31, 12, 7];
    mnames CONSTANT text[] := ARRAY['jan', 'feb', 'mar', 'apr', 'may', 'jun',
                                    'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
    dnames CONSTANT text[] := ARRAY['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
    mdays  CONSTANT int[]  := ARRAY[31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    ws     CONSTANT text   := E'[ \\t\\n\\r\\v\\f]';   -- C's isspace(), as regex escapes
    pfx    text := format('cron expression "%s": ', coalesce(expr, ''));
    e      text;
    fields text[];
    nf     int;
    fp     text;            -- 'minute field "61": ', the prefix of a field's errors
    item   text;
    m      text[];
    toks   text[];
    vals   int[];
    tok    text;
    t      text;
    rest   text;
    a      int;
    b      int;
    st     int;
    dom    boolean[] := array_fill(false, ARRAY[31]);
    mon    boolean[] := array_fill(false, ARRAY[12]);
    ok     boolean := false;
BEGIN
    IF expr IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = pfx ||
            'empty; write five fields (minute hour day-of-month month day-of-week) or a macro such as @daily';
    END IF;
    IF octet_length(expr) > 255 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = pfx || 'longer than 255 bytes';
    END IF;
    e := regexp_replace(expr, '^' || ws || '+|' || ws || '+$', '', 'g');
    IF e = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = pfx ||
            'empty; write five fields (minute hour day-of-month month day-of-week) or a macro such as @daily';
    END IF;
    IF left(e, 1) = '@' THEN
        CASE lower(e)
            WHEN '@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly' THEN
                RETURN true;
            ELSE
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = pfx ||
                    format('unknown macro "%s"; use @hourly, @daily, @weekly, @monthly or @yearly', e);
        END CASE;
    END IF;

    fields := regexp_split_to_array(e, ws || '+');
    nf := array_length(fields, 1);
    IF nf <> 5 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = pfx ||
            format('%s field%s; expected 5: minute hour day-of-month month day-of-week',
                   nf, CASE WHEN nf = 1 THEN '' ELSE 's' END);
    END IF;

    FOR f IN 1..5 LOOP
        fp := format('%s field "%s": ', fname[f], fields[f]);
        FOREACH item IN ARRAY string_to_array(fields[f], ',') LOOP
            IF item = '' THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = pfx || fp ||
                    'empty item in the list';
            END IF;
            IF left(item, 1) = '*' THEN
                a := flo[f];
                b := fhi[f];
                rest := substr(item, 2);
            ELSE
                -- the item's shape first, so that "61!" is a syntax error, not a bad value
                m := regexp_match(item, '^([0-9A-Za-z]*)(.*)$');
                toks := ARRAY[m[1]];
                rest := m[2];
                IF left(rest, 1) = '-' THEN
                    m := regexp_match(substr(rest, 2), '^([0-9A-Za-z]*)(.*)$');
                    toks := toks || m[1];
                    rest := m[2];
                END IF;
                IF '' = ANY (toks) OR (rest <> '' AND left(rest, 1) <> '/') THEN
                    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = pfx || fp ||
                        format('"%s" is not *, a value, a range A-B, or one of them with /STEP', item);
                END IF;
                vals := '{}';
                FOREACH tok IN ARRAY toks LOOP
                    IF tok ~ '^[0-9]+$' THEN
                        t := ltrim(tok, '0');
                        a := CASE WHEN t = '' THEN 0 WHEN length(t) > 4 THEN 100000 ELSE t::int END;
                        IF a < flo[f] OR a > fhi[f] THEN
                            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = pfx || fp ||
                                format('%s is out of range %s-%s', tok, flo[f], fhi[f]);
                        END IF;
                    ELSIF f = 4 AND lower(tok) = ANY (mnames) THEN
                        a := array_position(mnames, lower(tok));
                    ELSIF f = 5 AND lower(tok) = ANY (dnames) THEN
                        a := array_position(dnames, lower(tok)) - 1;
                    ELSE
                        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = pfx || fp ||
                            format('"%s" is not a %s', tok, CASE f WHEN 4 THEN 'month name (jan..dec)'
                                                                   WHEN 5 THEN 'day name (sun..sat)'
                                                                   ELSE 'number' END);
                    END IF;
                    vals := vals || a;
                END LOOP;
                a := vals[1];
                IF array_length(vals, 1) = 2 THEN
                    b := vals[2];
                    IF b < a THEN
                        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = pfx || fp ||
                            format('range "%s-%s" goes backwards (wrap-around ranges are not supported)',
                                   toks[1], toks[2]);
                    END IF;
                ELSE
                    b := CASE WHEN rest <> '' THEN fhi[f] ELSE a END;
                END IF;
            END IF;
            st := 1;
            IF rest <> '' THEN
                IF left(rest, 1) <> '/' OR substr(rest, 2) !~ '^[0-9]+$' THEN
                    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = pfx || fp ||
                        format('"%s" is not *, a value, a range A-B, or one of them with /STEP', item);
                END IF;
                t := ltrim(substr(rest, 2), '0');
                st := CASE WHEN t = '' THEN 0 WHEN length(t) > 4 THEN 100000 ELSE t::int END;
                IF st < 1 OR st > fhi[f] THEN
                    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = pfx || fp ||
                        format('step %s is out of range 1-%s', substr(rest, 2), fhi[f]);
                END IF;
            END IF;
            IF f IN (3, 4) THEN
                FOR v IN a..b BY st LOOP
                    IF f = 3 THEN dom[v] := true; ELSE mon[v] := true; END IF;
                END LOOP;
            END IF;
        END LOOP;
    END LOOP;

    -- Only the day of month decides when the day of week begins with '*' (Vixie's rule):
    -- it must name a day that one of the months has ("0 0 30 2 *" would never fire).
    IF left(fields[3], 1) <> '*' AND left(fields[5], 1) = '*' THEN
        FOR mo IN 1..12 LOOP
            CONTINUE WHEN NOT mon[mo];
            FOR d IN 1..mdays[mo] LOOP
                ok := ok OR dom[d];
            END LOOP;
        END LOOP;
        IF NOT ok THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = pfx ||
                format('day-of-month field "%s" names no day that month field "%s" has', fields[3], fields[4]);
        END IF;
    END IF;
    RETURN true;
END
$fn$;

CREATE TABLE rhino.schedules (
    name         text        PRIMARY KEY,
    cron         text        NOT NULL,
    kind         text        NOT NULL,
    payload      jsonb       NOT NULL DEFAULT '{}',
    queue        text        NOT NULL DEFAULT 'default',
    priority     smallint    NOT NULL DEFAULT 0,
    max_attempts int         NOT NULL DEFAULT 25,
    timeout      float8,
    -- fires that passed while no rhino ran: 'latest' enqueues the newest of them,
    -- 'all' every one (the newest 1000 at most), 'none' none
    missed       text        NOT NULL DEFAULT 'latest',
    source       text        NOT NULL DEFAULT 'sql',    -- 'config': a [schedule NAME] section
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- Every fire time up to here has been dealt with (enqueued, or skipped by
    -- the missed policy).  A whole minute; the reaper advances it with a
    -- compare-and-set, so two hosts cannot both act on the same fire times.
    fired_until  timestamptz NOT NULL DEFAULT date_trunc('minute', now()),
    next_fire_at timestamptz,               -- set by the reaper; NULL: not computed yet
    last_fire_at timestamptz,               -- the newest fire time that enqueued a job
    last_job_id  bigint,                    -- and that job
    error        text,                      -- why the reaper cannot use this row (NULL: it can)
    CONSTRAINT schedules_cron      CHECK (rhino.cron_check(cron)),
    CONSTRAINT schedules_name_len  CHECK (length(name) BETWEEN 1 AND 255),
    CONSTRAINT schedules_kind_len  CHECK (length(kind) BETWEEN 1 AND 255),
    CONSTRAINT schedules_queue_len CHECK (length(queue) BETWEEN 1 AND 255),
    CONSTRAINT schedules_attempts  CHECK (max_attempts >= 1),
    CONSTRAINT schedules_timeout   CHECK (timeout > 0),
    CONSTRAINT schedules_missed    CHECK (missed IN ('latest', 'all', 'none')),
    CONSTRAINT schedules_source    CHECK (source IN ('sql', 'config')),
    CONSTRAINT schedules_fired     CHECK (isfinite(fired_until))
);

-- The reaper's "which schedules are due" (next_fire_at IS NULL sorts first).
CREATE INDEX schedules_due ON rhino.schedules (next_fire_at NULLS FIRST);

CREATE TABLE rhino.schedule_fires (
    schedule_name text        NOT NULL REFERENCES rhino.schedules (name) ON DELETE CASCADE ON UPDATE CASCADE,
    fire_time     timestamptz NOT NULL,
    job_id        bigint      NOT NULL,
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_name, fire_time)
);

-- The reaper prunes fire rows older than the history's retention.
CREATE INDEX schedule_fires_time ON rhino.schedule_fires (fire_time);

-- Create or change a schedule; returns 'created', 'changed', or 'unchanged'
-- if it already was exactly so.  A changed cron expression starts
-- afresh from the current minute: fire times of the old expression are not
-- "missed" fires of the new one.  An unchanged expression keeps its place,
-- so re-applying the same schedule (every rhino does so for its config at
-- each start) neither fires it again nor forgets what it missed.
-- source is 'sql' unless rhino applies a [schedule NAME] config section.
CREATE FUNCTION rhino.schedule(name         text,
                               cron         text,
                               kind         text,
                               payload      jsonb  DEFAULT '{}',
                               queue        text   DEFAULT 'default',
                               priority     int    DEFAULT 0,
                               max_attempts int    DEFAULT 25,
                               timeout      float8 DEFAULT NULL,
                               missed       text   DEFAULT 'latest',
                               source       text   DEFAULT 'sql')
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $fn$
#variable_conflict use_column
DECLARE
    existed boolean;
    changed boolean;
BEGIN
    IF schedule.name IS NULL OR length(schedule.name) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'rhino.schedule: name must be 1 to 255 characters long';
    END IF;
    PERFORM rhino.cron_check(schedule.cron);
    IF schedule.kind IS NULL OR length(schedule.kind) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rhino.schedule %s: kind must be 1 to 255 characters long', schedule.name);
    END IF;
    IF length(coalesce(schedule.queue, 'default')) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rhino.schedule %s: queue must be 1 to 255 characters long', schedule.name);
    END IF;
    IF coalesce(schedule.missed, 'latest') NOT IN ('latest', 'all', 'none') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rhino.schedule %s: missed must be latest, all or none, not "%s"',
                             schedule.name, schedule.missed);
    END IF;
    IF coalesce(schedule.max_attempts, 25) < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rhino.schedule %s: max_attempts must be at least 1', schedule.name);
    END IF;
    IF schedule.timeout <= 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rhino.schedule %s: timeout must be a positive number of seconds (or NULL)',
                             schedule.name);
    END IF;
    IF coalesce(schedule.source, 'sql') NOT IN ('sql', 'config') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rhino.schedule %s: source must be sql or config', schedule.name);
    END IF;

    -- lock an existing row first: concurrent changes of one schedule then take turns
    SELECT true INTO existed FROM rhino.schedules s WHERE s.name = schedule.name FOR UPDATE;
    INSERT INTO rhino.schedules AS s (name, cron, kind, payload, queue, priority, max_attempts, timeout,
                                      missed, source)
    VALUES (schedule.name, schedule.cron, schedule.kind,
            coalesce(schedule.payload, '{}'),
            coalesce(schedule.queue, 'default'),
            coalesce(schedule.priority, 0)::smallint,          -- "smallint out of range" beyond +-32767
            coalesce(schedule.max_attempts, 25),
            schedule.timeout,
            coalesce(schedule.missed, 'latest'),
            coalesce(schedule.source, 'sql'))
    ON CONFLICT (name) DO UPDATE
       SET cron = excluded.cron, kind = excluded.kind, payload = excluded.payload, queue = excluded.queue,
           priority = excluded.priority, max_attempts = excluded.max_attempts, timeout = excluded.timeout,
           missed = excluded.missed, source = excluded.source, updated_at = now(),
           fired_until  = CASE WHEN s.cron = excluded.cron THEN s.fired_until
                               ELSE date_trunc('minute', now()) END,
           next_fire_at = CASE WHEN s.cron = excluded.cron THEN s.next_fire_at END,
           error        = CASE WHEN s.cron = excluded.cron THEN s.error END
     WHERE (s.cron, s.kind, s.payload, s.queue, s.priority, s.max_attempts, s.timeout, s.missed, s.source)
           IS DISTINCT FROM
           (excluded.cron, excluded.kind, excluded.payload, excluded.queue, excluded.priority,
            excluded.max_attempts, excluded.timeout, excluded.missed, excluded.source)
    RETURNING true INTO changed;
    RETURN CASE WHEN changed IS NULL THEN 'unchanged' WHEN existed THEN 'changed' ELSE 'created' END;
END
$fn$;

-- Remove a schedule (and its fire rows); true if there was one.  Jobs it
-- already enqueued stay.
CREATE FUNCTION rhino.unschedule(name text)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $fn$
    WITH d AS (DELETE FROM rhino.schedules s WHERE s.name = unschedule.name RETURNING 1)
    SELECT count(*) > 0 FROM d
$fn$;
