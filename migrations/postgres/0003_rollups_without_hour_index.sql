-- As SQLite's 0011: the index on rollups(hour_ms) goes; the status page and retention read
-- each target's range of the primary key (target, hour_ms, …).
drop index rollups_hour;
