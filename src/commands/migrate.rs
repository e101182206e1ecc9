//! `migrate --to postgres://…`: copies the config's SQLite history into a PostgreSQL
//! database (SPEC §14), idempotently, with a progress line on a terminal.

use super::Exit;
use crate::config::Document;
use crate::store::{CopyProgress, Database, LockError, Store, WriterLock};
use secrecy::SecretString;
use std::io::{IsTerminal, Write};

pub async fn run(doc: &Document, to: &str, out: &mut impl Write) -> anyhow::Result<Exit> {
    let Database::Sqlite(path) = doc.database()? else {
        anyhow::bail!(
            "the config's [storage] already names a PostgreSQL database; migrate copies the SQLite history a config names (path)"
        );
    };
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        super::print_error(format_args!(
            "--to must be a PostgreSQL URL (postgres://user@host:5432/database)"
        ));
        return Ok(Exit::Usage);
    }
    if let Err(why) = crate::config::check_postgres_url(to) {
        super::print_error(format_args!("--to: {why}"));
        return Ok(Exit::Usage);
    }
    if !path.exists() {
        anyhow::bail!("no database at {}: nothing to migrate", path.display());
    }
    // A daemon writing the file meanwhile would leave the copy behind: it must be stopped.
    let _lock = match WriterLock::try_acquire(&path) {
        Ok(lock) => lock,
        Err(LockError::Held { .. }) => {
            super::print_error(format_args!(
                "a daemon is writing {}: stop it first (systemctl stop openai-watch)",
                path.display()
            ));
            return Ok(Exit::TempFail);
        }
        Err(e) => return Err(e.into()),
    };
    let from = Store::open(&path).await?;
    let into = Store::open_postgres(&SecretString::from(to.to_string()), true).await?;
    let terminal = std::io::stderr().is_terminal();
    let counts = from
        .copy_into(&into, |p: &CopyProgress| {
            if terminal {
                let share = if p.total == 0 {
                    100
                } else {
                    p.done * 100 / p.total
                };
                eprint!(
                    "\r\x1b[2Kcopying {}: {}/{} rows ({share}%)",
                    p.table, p.done, p.total
                );
            }
        })
        .await;
    if terminal {
        eprintln!();
    }
    let counts = counts?;
    for c in &counts {
        writeln!(
            out,
            "{}: {} rows ({} new, {} updated, {} unchanged, {} skipped)",
            c.table, c.rows, c.new, c.updated, c.unchanged, c.skipped
        )?;
    }
    let skipped: Vec<String> = counts
        .iter()
        .filter(|c| c.skipped > 0)
        .map(|c| format!("{} {}", c.skipped, c.table))
        .collect();
    writeln!(
        out,
        "copied {} into {}; point [storage] url at it (and remove path) to run on it",
        path.display(),
        into.name()
    )?;
    from.close().await;
    into.close().await;
    if !skipped.is_empty() {
        super::print_error(format_args!(
            "not copied: {}: their ids are taken by rows written into the database since the first copy (an agent running on it); those rows were kept",
            skipped.join(", ")
        ));
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}
