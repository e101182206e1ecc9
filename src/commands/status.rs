//! `status`: the current state and open incidents, read from the database (no network, no
//! secrets). Its JSON is the shape of `GET /api/v1/status`.

use super::Exit;
use crate::config::Document;
use crate::store::{Database, Store};
use std::io::Write;

/// Runs `status`; the database must exist (this command never creates one).
pub async fn run(doc: &Document, json: bool, out: &mut impl Write) -> anyhow::Result<Exit> {
    let store = match doc.database()? {
        Database::Sqlite(path) => {
            if !path.exists() {
                anyhow::bail!(
                    "no database at {}: the daemon has not run with this config yet",
                    path.display()
                );
            }
            Store::open_read_only(&path).await?
        }
        Database::Postgres(url) => Store::open_postgres(&url, false).await?,
    };
    let names = doc.target_names();
    let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    let status = crate::status::read(&names, &store).await?;
    let failed = store.failed_deliveries(5).await?;
    store.close().await;
    if json {
        serde_json::to_writer_pretty(&mut *out, &status)?;
        writeln!(out)?;
        return Ok(Exit::Success);
    }
    writeln!(out, "overall: {}", status.overall)?;
    for t in &status.targets {
        writeln!(
            out,
            "{:<9} {} (latest: {} at {})",
            t.state.as_str().to_uppercase(),
            t.name,
            t.error_id.as_deref().unwrap_or("never probed"),
            t.last_probe_at.as_deref().unwrap_or("-")
        )?;
        for i in &t.open_incidents {
            writeln!(
                out,
                "  incident #{} {} {} since {} ({} probes): {}",
                i.id,
                i.category,
                i.error_id,
                i.opened_at,
                i.probe_count,
                i.last_message.as_deref().unwrap_or("-")
            )?;
            writeln!(out, "    resolution: {}", i.resolution)?;
        }
    }
    for f in failed {
        writeln!(
            out,
            "alert to {} for incident #{} failed: {}",
            f.channel, f.incident_id, f.error
        )?;
    }
    Ok(Exit::Success)
}
