-- Schema version 13: the primary key and jobs_claim fill their pages whole.
--
-- Why: new jobs take rising ids and, within a queue, rising (run_at, id), so
-- a bulk enqueue adds its entries at the right end of both indexes, and
-- PostgreSQL splits that rightmost page at the index's fillfactor: 90 left
-- a tenth of every page empty for inserts in the middle that these indexes
-- hardly get (a promoted or retried job is keyed by a run_at at or after
-- now).  COPY into rhino.jobs (psql \copy, pairs alternated): 1M jobs 3.43 s
-- on average at 100 against 3.52 s at 90, faster in six pairs of six;
-- 250k jobs 1.12 against 1.17 s, faster in eight pairs of ten.  Drains
-- within the noise: 250k in four pairs 91.8k against 93.1k jobs/s (one
-- pair 10 % apart each way), 1M in two 86.5k / 95.2k against 94.1k / 94.5k.
-- Splits in the middle of a page are 50/50 whatever the fillfactor, so the
-- claims' new row versions in the primary key split pages as before.  Only
-- future splits are affected; nothing is rebuilt.
ALTER INDEX rhino.jobs_pkey SET (fillfactor = 100);
ALTER INDEX rhino.jobs_claim SET (fillfactor = 100);
