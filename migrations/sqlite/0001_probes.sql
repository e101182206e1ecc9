-- One row per probe: what was asked, from where, what came back and what it means.
-- Times are Unix milliseconds (UTC). Categories and error ids are the catalog's stable ids.
create table probes (
    id integer primary key,
    at_ms integer not null,
    location text not null,
    target text not null,
    probe text not null,                 -- probe kind: models | chat
    latency_ms integer not null,
    http_status integer,                 -- null when no HTTP answer arrived
    transport_error text,                -- timeout | dns | refused | reset | tls | connect
    category text not null,
    error_id text not null,
    message text,                        -- upstream message, masked, at most 1 KiB
    request_id text,                     -- x-request-id
    ratelimit_limit_requests integer,
    ratelimit_limit_tokens integer,
    ratelimit_remaining_requests integer,
    ratelimit_remaining_tokens integer,
    ratelimit_reset_requests text,
    ratelimit_reset_tokens text
);

-- The dashboard and the API read a target's recent probes; retention deletes by age.
create index probes_target_at on probes (target, at_ms);
create index probes_at on probes (at_ms);
