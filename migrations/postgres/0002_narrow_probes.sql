-- As SQLite's 0010: the index on probes(at_ms) goes; retention walks the primary key and the
-- detector's start-up read goes through probes(target, at_ms).
drop index probes_at;
