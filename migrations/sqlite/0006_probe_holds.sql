-- Pauses the API asked for (`retry-after`): until when a probe kind of a target must not be
-- sent again. Kept across reloads and restarts, so that the monitor never causes the rate
-- limit it watches.
create table probe_holds (
    target text not null,
    probe text not null check (probe in ('models', 'chat', 'responses', 'chat_stream', 'embeddings')),
    until_ms integer not null,
    primary key (target, probe)
) without rowid;
