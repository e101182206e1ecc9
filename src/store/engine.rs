//! The two engines behind one `Store`: SQLite (the embedded default) and PostgreSQL (a
//! fleet of agents sharing one database, SPEC §14).
//!
//! Each statement is written once, in SQL both engines accept (`$1` placeholders, `on
//! conflict`, `returning`, `cast(… as bigint)`), and run through [`on!`], which compiles it
//! for each engine's native driver: the binds and the row types are checked by the compiler
//! against both, and the embedded path keeps SQLite's own driver at full speed. The few
//! statements that cannot be portable (a list parameter, a row lock) say so where they are.

use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool};
use std::path::PathBuf;

/// Which database a config names: `[storage] path` or `[storage] url`.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(PathBuf),
    /// A `postgres://` URL; it may hold a password, so it is never printed whole.
    Postgres(SecretString),
}

impl Database {
    /// The database in words, without a password: the SQLite path, or the PostgreSQL URL's
    /// host, port and database name.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(url) => describe_url(url.expose_secret()),
        }
    }

    /// The SQLite file, when this is one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }
}

/// `postgres://user:secret@host:5432/db?sslmode=…` → `postgres://host:5432/db`.
pub fn describe_url(url: &str) -> String {
    // Whatever comes before the last '@' may be a password, however the rest parses (an
    // unencoded '/' in it would make it look like a port and a path).
    let url = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rfind('@') {
            Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
            None => url.to_string(),
        },
        None => return "a PostgreSQL URL that does not parse".to_string(),
    };
    match reqwest::Url::parse(&url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}{}",
                u.scheme(),
                u.host_str().unwrap_or("localhost"),
                u.path()
            )
        }
        Err(_) => "a PostgreSQL URL that does not parse".to_string(),
    }
}

/// Advisory lock keys (PostgreSQL): incident changes, the outbox's reminders and re-fires,
/// and the work one agent does for all (retention, rollups, the status-page poller).
/// `text` with the password and user name of `url` (and their percent-decoded forms)
/// replaced by `…`: for error messages of the database driver, which may quote the URL.
pub fn scrub_url_secrets(text: &str, url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return text.to_string();
    };
    let Some(at) = rest.rfind('@') else {
        return text.to_string();
    };
    let userinfo = &rest[..at];
    let mut pieces: Vec<String> = vec![userinfo.to_string()];
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    for piece in [user, password] {
        pieces.push(piece.to_string());
        if let Ok(decoded) = percent_encoding::percent_decode_str(piece).decode_utf8() {
            pieces.push(decoded.into_owned());
        }
    }
    pieces.retain(|p| p.len() >= 3);
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut out = text.to_string();
    for piece in pieces {
        out = out.replace(&piece, "…");
    }
    out
}

pub const INCIDENTS_LOCK: i64 = 0x6f77_0001;
pub const OUTBOX_LOCK: i64 = 0x6f77_0002;
pub const HOUSEKEEPING_LOCK: i64 = 0x6f77_0003;

/// One of two things, by engine.
pub enum Either<S, P> {
    Sqlite(S),
    Postgres(P),
}

/// A pool of connections to one engine.
#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    /// The engine's pool. Async and fallible like [`Tx::engine`], so that [`on!`] takes
    /// either.
    pub async fn engine(&self) -> Result<Either<&SqlitePool, &PgPool>, sqlx::Error> {
        Ok(match self {
            Pool::Sqlite(p) => Either::Sqlite(p),
            Pool::Postgres(p) => Either::Postgres(p),
        })
    }

    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// The most statements a SQLite script may have to be kept prepared (see [`SqliteTx`]).
const CACHED_SCRIPT_STATEMENTS: usize = 8;

/// A write transaction on one engine.
pub enum Tx {
    Sqlite(SqliteTx),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// A write transaction on SQLite, sent as scripts. Each statement sqlx runs on SQLite is a
/// round trip to the connection's own thread, and at one batch of probes a second those
/// round trips (two thread switches each) cost more than the writing itself. So the
/// transaction's `BEGIN IMMEDIATE` and the writes whose results nobody reads ([`write_on!`])
/// wait in a script, sent in one round trip with the next read or with the `COMMIT`: a
/// batch that only writes is one round trip.
///
/// It holds the process's writer turn (see `Store::write_tx`), given back when it ends. One
/// that ends without a commit, after part of it was sent, closes its connection instead of
/// handing it back: SQLite rolls back what a closed connection left open.
///
/// A script is prepared once and kept in the connection's statement cache when it is short
/// (a wave of a few targets repeats the same few shapes); a longer one is prepared for its
/// one use: its shape seldom repeats, and kept it would hold a prepared statement per part.
pub struct SqliteTx {
    conn: sqlx::pool::PoolConnection<Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
    script: sqlx::QueryBuilder<Sqlite>,
    /// Statements in the script.
    statements: usize,
    /// Part of the transaction went to the connection.
    sent: bool,
    committed: bool,
}

impl SqliteTx {
    pub fn new(
        conn: sqlx::pool::PoolConnection<Sqlite>,
        turn: tokio::sync::OwnedMutexGuard<()>,
    ) -> SqliteTx {
        SqliteTx {
            conn,
            _turn: turn,
            script: sqlx::QueryBuilder::new("BEGIN IMMEDIATE;\n"),
            statements: 1,
            sent: false,
            committed: false,
        }
    }

    /// The script, to add a statement to (ended by `;`).
    pub fn script(&mut self) -> &mut sqlx::QueryBuilder<Sqlite> {
        self.statements += 1;
        &mut self.script
    }

    /// Sends what the script holds.
    async fn send(&mut self) -> Result<(), sqlx::Error> {
        if self.statements == 0 {
            return Ok(());
        }
        let mut script = std::mem::replace(&mut self.script, sqlx::QueryBuilder::new(""));
        let keep = self.statements <= CACHED_SCRIPT_STATEMENTS;
        self.statements = 0;
        self.sent = true;
        script
            .build()
            .persistent(keep)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if self.sent && !self.committed {
            self.conn.close_on_drop();
        }
    }
}

impl Tx {
    /// The engine's connection, for a statement whose result is read: on SQLite the script
    /// is sent first, so that the statement sees every write before it.
    pub async fn engine(
        &mut self,
    ) -> Result<Either<&mut SqliteConnection, &mut PgConnection>, sqlx::Error> {
        Ok(match self {
            Tx::Sqlite(t) => {
                t.send().await?;
                Either::Sqlite(&mut *t.conn)
            }
            Tx::Postgres(t) => Either::Postgres(&mut **t),
        })
    }

    /// Where a write whose result is not read goes: SQLite's script, or PostgreSQL's
    /// connection (see [`write_on!`]).
    pub fn writes(&mut self) -> Either<&mut sqlx::QueryBuilder<Sqlite>, &mut PgConnection> {
        match self {
            Tx::Sqlite(t) => Either::Sqlite(t.script()),
            Tx::Postgres(t) => Either::Postgres(&mut **t),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(mut t) => {
                t.script().push("COMMIT;");
                t.send().await?;
                t.committed = true;
                Ok(())
            }
            Tx::Postgres(t) => t.commit().await,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Tx::Postgres(_))
    }

    /// On PostgreSQL, waits for the advisory lock `key` and holds it to the end of the
    /// transaction: agents sharing the database take turns. SQLite has one writer already.
    pub async fn serialize(&mut self, key: i64) -> Result<(), sqlx::Error> {
        if let Tx::Postgres(t) = self {
            sqlx::query("select pg_advisory_xact_lock($1)")
                .bind(key)
                .execute(&mut **t)
                .await?;
        }
        Ok(())
    }
}

/// Runs `$body` with `$c` bound to the engine's pool or connection (`$on` is a [`Pool`] or a
/// [`Tx`]): the statement is written once and compiled for both engines.
macro_rules! on {
    ($on:expr, $c:ident => $body:expr) => {
        match $on.engine().await {
            Err(e) => Err(::core::convert::From::from(e)),
            Ok($crate::store::engine::Either::Sqlite($c)) => $body,
            Ok($crate::store::engine::Either::Postgres($c)) => $body,
        }
    };
}

/// A write in transaction `$tx` whose result is not read: `$body` builds it on `$q`, a
/// `QueryBuilder` begun with `$sql`. On PostgreSQL it runs at once; on SQLite it is added to
/// the transaction's script (see [`SqliteTx`]). Evaluates to `Result<(), sqlx::Error>`.
macro_rules! write_on {
    ($tx:expr, $q:ident = $sql:expr => $body:block) => {
        match $tx.writes() {
            $crate::store::engine::Either::Sqlite($q) => {
                $q.push($sql);
                $body
                $q.push(";\n");
                Ok::<(), sqlx::Error>(())
            }
            $crate::store::engine::Either::Postgres(c) => {
                let mut $q = sqlx::QueryBuilder::new($sql);
                $body
                $q.build().execute(c).await.map(|_| ())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_described_url_keeps_no_credentials() {
        let d = Database::Postgres(SecretString::from(
            "postgres://watch:s3cret@db.internal:6543/watch?sslmode=require",
        ));
        assert_eq!(d.describe(), "postgres://db.internal:6543/watch");
        assert!(!d.describe().contains("s3cret"));
        assert_eq!(
            describe_url("not a url"),
            "a PostgreSQL URL that does not parse"
        );
    }
}
