-- Day two (SPEC §15): silences, acknowledgements, suppressed deliveries and the audit trail
-- of every write made through the API or the command line.

create table silences (
    id integer primary key,
    -- exact values or `*` globs
    target text not null,
    category text not null,
    error_id text not null,
    location text not null,
    starts_at_ms integer not null,
    ends_at_ms integer not null check (ends_at_ms > starts_at_ms),
    comment text not null,
    created_by text not null,            -- a dashboard token's name, or `cli:USER`
    created_at_ms integer not null,
    expired_at_ms integer                -- set by `silence expire`: ends_at_ms moved to then
);
create index silences_ends on silences (ends_at_ms);

-- A delivery can now be suppressed (by a silence or a maintenance window) instead of sent:
-- the row stays, with what suppressed it. SQLite cannot change a CHECK in place, so the
-- table is rebuilt (nothing references it).
alter table alert_deliveries rename to alert_deliveries_v7;
create table alert_deliveries (
    id integer primary key,
    event_id integer not null references alert_events (id),
    channel text not null,
    state text not null check (state in ('pending', 'sent', 'failed', 'suppressed')),
    attempts integer not null default 0,
    next_attempt_at_ms integer not null,
    last_error text,
    sent_at_ms integer,
    message_id text,                     -- the Message-ID an email went out with
    silence_id integer references silences (id),   -- the silence that suppressed it
    maintenance text,                    -- or the maintenance window, by name
    unique (event_id, channel)
);


insert into alert_deliveries (id, event_id, channel, state, attempts, next_attempt_at_ms,
    last_error, sent_at_ms, message_id)
    select id, event_id, channel, state, attempts, next_attempt_at_ms, last_error, sent_at_ms,
    message_id from alert_deliveries_v7;
drop table alert_deliveries_v7;
create index alert_deliveries_pending on alert_deliveries (state, next_attempt_at_ms);

alter table incidents add column acked_at_ms integer;
alter table incidents add column acked_by text;
alter table incidents add column ack_comment text;

create table audit_log (
    id integer primary key,
    at_ms integer not null,
    actor text not null,                 -- a dashboard token's name, or `cli:USER`
    action text not null,                -- silence.add, silence.expire, incident.ack
    detail text not null                 -- JSON: what was written
);
