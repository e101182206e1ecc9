-- A random id per database, made when the database is: alert Message-IDs carry it, so that
-- two installations (or a new database) never reuse one another's ids in a shared mailbox.
create table installation (
    id text not null check (length(id) = 32)
);
insert into installation (id) values (lower(hex(randomblob(16))));
