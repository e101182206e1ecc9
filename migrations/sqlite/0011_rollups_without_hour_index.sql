-- A narrower history (SPEC §11: the database of 20 targets × a year at 1/min within 50 MB):
-- the index on rollups(hour_ms) goes, two fifths of the rollups' size. The status page reads
-- the last day of each target down the primary key (target, hour_ms, …), and retention
-- deletes each target's oldest hours from the start of that target's range of it.
drop index rollups_hour;
