-- Incidents (SPEC §6): at most one open per (target, category).
create table incidents (
    id integer primary key,
    target text not null,
    category text not null,
    location text not null,
    probe text not null,                 -- probe kind that first saw it
    first_error_id text not null,
    last_error_id text not null,
    http_status integer,
    opened_at_ms integer not null,
    last_seen_at_ms integer not null,
    resolved_at_ms integer,
    probe_count integer not null,
    last_message text,                   -- masked upstream message
    request_id text
);
create unique index incidents_one_open on incidents (target, category) where resolved_at_ms is null;
create index incidents_opened on incidents (opened_at_ms);

-- The detector's memory per target (streaks, window, open incidents), written in the same
-- transaction as the probes, so that a restart continues exactly where it stopped.
create table detector_state (
    target text primary key,
    state text not null                  -- JSON
);

-- The alert outbox (SPEC §7): an event is written in the same transaction that changes the
-- incident, with one delivery row per channel.
create table alert_events (
    id integer primary key,
    incident_id integer not null references incidents (id),
    kind text not null,                  -- firing | reminder | resolved
    category text not null,
    created_at_ms integer not null,
    due_at_ms integer not null           -- created + group_wait
);
create index alert_events_incident on alert_events (incident_id, kind);

create table alert_deliveries (
    id integer primary key,
    event_id integer not null references alert_events (id),
    channel text not null,
    state text not null,                 -- pending | sent | failed
    attempts integer not null default 0,
    next_attempt_at_ms integer not null,
    last_error text,
    sent_at_ms integer,
    unique (event_id, channel)
);
create index alert_deliveries_pending on alert_deliveries (state, next_attempt_at_ms);
