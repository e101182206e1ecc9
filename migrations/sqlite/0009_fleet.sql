-- Fleet (SPEC §14): where an open incident is seen, the detector's state per location, every
-- agent's heartbeat, and leases on deliveries. On SQLite one agent writes, but the rows are
-- the same as PostgreSQL's, so that `migrate --to` copies them as they are.

-- One row per location that sees an open incident.
create table incident_locations (
    incident_id integer not null references incidents (id),
    location text not null,
    since_ms integer not null,
    until_ms integer,                      -- null while the location sees it
    primary key (incident_id, location)
) without rowid;
insert into incident_locations (incident_id, location, since_ms)
    select id, location, opened_at_ms from incidents where resolved_at_ms is null;

-- The detector's state per (location, target). Rows from before are kept under the location
-- '' and read by the next daemon as its own.
create table detector_states (
    location text not null,
    target text not null,
    state text not null,
    primary key (location, target)
) without rowid;
insert into detector_states (location, target, state) select '', target, state from detector_state;
drop table detector_state;

create table agents (
    location text primary key,
    seen_at_ms integer not null,
    silent_after_ms integer not null,
    started_at_ms integer not null,
    version text not null
) without rowid;

alter table alert_deliveries add column lease_owner text;
alter table alert_deliveries add column lease_until_ms integer;
