//! Weekly maintenance windows on the days the clocks change, judged by the built binary
//! (`config check --at`): both ends are local times in the window's zone.

use crate::helpers::*;

async fn windows_at(ws: &Workspace, at: &str) -> String {
    let config = ws.config_path();
    let out = run_cli(
        &[
            "--config",
            config.to_str().unwrap(),
            "config",
            "check",
            "--at",
            at,
        ],
        &[],
        ws.dir.path(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn line<'a>(out: &'a str, window: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("maintenance {window}:")))
        .unwrap_or_else(|| panic!("no line for {window} in {out}"))
}

#[tokio::test]
async fn weekly_windows_keep_their_local_hours_on_daylight_saving_days() {
    let ws = Workspace::new();
    ws.write_config(
        "[[targets]]\nname = \"prod\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [[targets.probes]]\nkind = \"models\"\ninterval = \"60s\"\n\n\
         [[maintenance]]\nname = \"berlin\"\nweekly = \"sun 02:00-04:00\"\ntz = \"Europe/Berlin\"\n\n\
         [[maintenance]]\nname = \"newyork\"\nweekly = \"sun 01:30-02:30\"\ntz = \"America/New_York\"\n",
    );
    // Autumn in Berlin: 02:00 CEST (00:00 UTC), the first of the two 02:00s, to 04:00 CET.
    let out = windows_at(&ws, "2027-10-31T02:30:00Z").await;
    assert!(
        line(&out, "berlin")
            .ends_with("holding from 2027-10-31T00:00:00Z until 2027-10-31T03:00:00Z"),
        "{out}"
    );
    // Spring in Berlin: 02:00 does not exist; from the jump (03:00 CEST) to 04:00 CEST.
    let out = windows_at(&ws, "2027-03-27T12:00:00Z").await;
    assert!(
        line(&out, "berlin").ends_with("next from 2027-03-28T01:00:00Z until 2027-03-28T02:00:00Z"),
        "{out}"
    );
    // Real alerts are not held back an extra hour: at 04:30 CEST it is over.
    let out = windows_at(&ws, "2027-03-28T02:30:00Z").await;
    assert!(
        line(&out, "berlin").ends_with("next from 2027-04-04T00:00:00Z until 2027-04-04T02:00:00Z"),
        "{out}"
    );
    // Spring in New York: 01:30 EST to 02:30, which the clocks skip: it ends at the jump.
    let out = windows_at(&ws, "2027-03-14T06:45:00Z").await;
    assert!(
        line(&out, "newyork")
            .ends_with("holding from 2027-03-14T06:30:00Z until 2027-03-14T07:00:00Z"),
        "{out}"
    );
    let out = windows_at(&ws, "2027-03-14T07:15:00Z").await;
    assert!(
        line(&out, "newyork").contains("next from 2027-03-21"),
        "{out}"
    );
}

#[tokio::test]
async fn loose_weekly_schedules_are_refused_with_their_position() {
    for bad in ["sunXYZ 01:00-02:00", "sun +1:00-02:00", "sun 1:0-2:00"] {
        let ws = Workspace::new();
        let config = ws.write_config(&format!(
            "[[targets]]\nname = \"prod\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             [[targets.probes]]\nkind = \"models\"\ninterval = \"60s\"\n\n\
             [[maintenance]]\nname = \"w\"\nweekly = \"{bad}\"\n"
        ));
        let out = run_cli(
            &["--config", config.to_str().unwrap(), "config", "check"],
            &[],
            ws.dir.path(),
        )
        .await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{bad}: {err}");
        assert!(
            err.contains("openai-watch.toml:") && err.contains("maintenance[0].weekly"),
            "{bad}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
