-- The largest share of a rate limit used in each hour (0 to 1; null when the answers carried
-- no x-ratelimit-* headers): the 24-hour headroom history of the status page, kept with the
-- rollups so that it survives the pruning of raw probes and costs no scan of them.
alter table rollups add column used_max real check (used_max is null or (used_max >= 0 and used_max <= 1));
