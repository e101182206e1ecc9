-- Every column that holds a closed vocabulary (src/domain.rs) gets a CHECK constraint, so that
-- a row the code cannot read is refused when it is written, not found when it is read. The
-- tables also gain what version 2 records: the time to the first token of a streamed probe,
-- the Message-ID of each email, and the largest share of a rate limit used per hour.
-- SQLite cannot add a constraint to a table, so each table is rebuilt: the old ones are moved
-- aside (legacy_alter_table keeps the foreign keys of other tables pointing at the names, not
-- at the moved tables), the new ones created and filled parent first, the old ones dropped,
-- the indexes made again. It all happens in the migration's one transaction.
pragma legacy_alter_table = on;
pragma defer_foreign_keys = on;

alter table probes rename to probes_v3;
alter table incidents rename to incidents_v3;
alter table alert_events rename to alert_events_v3;
alter table alert_deliveries rename to alert_deliveries_v3;
alter table rollups rename to rollups_v3;

create table probes (
    id integer primary key,
    at_ms integer not null,
    location text not null,
    target text not null,
    probe text not null check (probe in ('models', 'chat', 'responses', 'chat_stream', 'embeddings')),
    latency_ms integer not null,
    http_status integer,
    transport_error text check (transport_error in ('timeout', 'dns', 'refused', 'reset', 'tls', 'connect')),
    category text not null check (category in ('ok', 'auth', 'region', 'quota', 'rate_limit', 'overload', 'outage', 'client_error', 'unknown', 'headroom', 'slow')),
    error_id text not null,
    message text,
    request_id text,
    ratelimit_limit_requests integer,
    ratelimit_limit_tokens integer,
    ratelimit_remaining_requests integer,
    ratelimit_remaining_tokens integer,
    ratelimit_reset_requests text,
    ratelimit_reset_tokens text,
    ttft_ms integer                      -- chat_stream: time to the first token
);

create table incidents (
    id integer primary key,
    target text not null,
    category text not null check (category in ('auth', 'region', 'quota', 'rate_limit', 'overload', 'outage', 'client_error', 'unknown', 'headroom', 'slow')),
    location text not null,
    probe text not null check (probe in ('models', 'chat', 'responses', 'chat_stream', 'embeddings')),
    first_error_id text not null,
    last_error_id text not null,
    http_status integer,
    opened_at_ms integer not null,
    last_seen_at_ms integer not null,
    resolved_at_ms integer,
    probe_count integer not null,
    last_message text,
    request_id text
);

create table alert_events (
    id integer primary key,
    incident_id integer not null references incidents (id),
    kind text not null check (kind in ('firing', 'reminder', 'resolved')),
    category text not null check (category in ('auth', 'region', 'quota', 'rate_limit', 'overload', 'outage', 'client_error', 'unknown', 'headroom', 'slow')),
    created_at_ms integer not null,
    due_at_ms integer not null
);

create table alert_deliveries (
    id integer primary key,
    event_id integer not null references alert_events (id),
    channel text not null,
    state text not null check (state in ('pending', 'sent', 'failed')),
    attempts integer not null default 0,
    next_attempt_at_ms integer not null,
    last_error text,
    sent_at_ms integer,
    message_id text,                     -- the Message-ID an email went out with
    unique (event_id, channel)
);

create table rollups (
    target text not null,
    probe text not null check (probe in ('models', 'chat', 'responses', 'chat_stream', 'embeddings')),
    category text not null check (category in ('ok', 'auth', 'region', 'quota', 'rate_limit', 'overload', 'outage', 'client_error', 'unknown', 'headroom', 'slow')),
    hour_ms integer not null,
    count integer not null,
    latency_sum_ms integer not null,
    latency_max_ms integer not null,
    -- the largest share of a rate limit used in the hour (0 to 1; null without x-ratelimit-*)
    used_max real check (used_max is null or (used_max >= 0 and used_max <= 1)),
    primary key (target, hour_ms, probe, category)
) without rowid;

insert into probes select *, null from probes_v3;
insert into incidents select * from incidents_v3;
insert into alert_events select * from alert_events_v3;
insert into alert_deliveries select *, null from alert_deliveries_v3;
insert into rollups select *, null from rollups_v3;

drop table alert_deliveries_v3;
drop table alert_events_v3;
drop table incidents_v3;
drop table probes_v3;
drop table rollups_v3;

create index probes_target_at on probes (target, at_ms);
create index probes_at on probes (at_ms);
create unique index incidents_one_open on incidents (target, category) where resolved_at_ms is null;
create index incidents_opened on incidents (opened_at_ms);
create index alert_events_incident on alert_events (incident_id, kind);
create index alert_deliveries_pending on alert_deliveries (state, next_attempt_at_ms);
create index rollups_hour on rollups (hour_ms);

pragma legacy_alter_table = off;
