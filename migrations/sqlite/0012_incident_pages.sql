-- Incidents are read a page at a time, filtered in SQL (by target, open or resolved), and
-- resolved ones are pruned after rollup_retention, oldest first.
create index incidents_target_id on incidents (target, id);
create index incidents_resolved on incidents (resolved_at_ms) where resolved_at_ms is not null;
