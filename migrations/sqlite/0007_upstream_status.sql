-- What the upstream status page (OpenAI's Statuspage summary) last said, written by the
-- poller and read by the notifier when it renders an alert: an alert never waits for the
-- status page.
create table upstream_status (
    source text primary key,             -- the summary URL
    state text not null,                 -- JSON: indicator, incidents, fetched/unavailable times
    etag text,
    last_modified text
) without rowid;
