-- Schema version 7: no deduplication in the claim indexes.
--
-- B-tree deduplication merges entries with equal keys when a leaf page
-- fills.  The keys of jobs_claim and jobs_keyed end in the job's id, so no
-- two are ever equal and every attempt was wasted work on the insert path:
-- a bulk COPY of 250,000 jobs spent 5% of its time on it (1.86-1.95 s
-- with, 1.81 s without).  Only future page splits are affected; nothing is
-- rebuilt.
ALTER INDEX rhino.jobs_claim SET (deduplicate_items = off);
ALTER INDEX rhino.jobs_keyed SET (deduplicate_items = off);
