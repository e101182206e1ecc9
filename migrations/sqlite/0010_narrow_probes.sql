-- A narrower history (SPEC §11: the database of 20 targets × a year at 1/min within 50 MB):
-- the index on probes(at_ms) goes. Retention walks the table in id order (rows are written
-- in time order) and the detector's start-up read goes through probes(target, at_ms), so
-- nothing reads through it any more; it cost a fifth of the probes' size.
drop index probes_at;
