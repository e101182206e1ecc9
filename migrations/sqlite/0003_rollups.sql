-- Hourly rollups per target, probe kind and category (SPEC §8): the long-range views (the
-- 90-day bars) read these, so they stay fast with a year of history and survive the pruning
-- of raw probe rows.
create table rollups (
    target text not null,
    probe text not null,
    category text not null,
    hour_ms integer not null,            -- start of the hour, Unix milliseconds
    count integer not null,
    latency_sum_ms integer not null,
    latency_max_ms integer not null,
    primary key (target, hour_ms, probe, category)
) without rowid;
create index rollups_hour on rollups (hour_ms);
