//! The README's catalog tables are the catalog: same ids, titles, categories and severities,
//! the documented errors and then the leading signals.

use openai_watch::catalog::{CATALOG, SIGNALS};

#[test]
fn the_readme_catalog_table_matches_the_catalog() {
    let readme = include_str!("../../README.md");
    let rows: Vec<Vec<&str>> = readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .filter(|cells: &Vec<&str>| cells.len() == 5)
        .collect();
    assert_eq!(
        rows.len(),
        CATALOG.len() + SIGNALS.len(),
        "one README row per catalog entry and leading signal"
    );
    for (row, entry) in rows.iter().zip(CATALOG.iter().chain(SIGNALS)) {
        assert_eq!(row[0].trim_matches('`'), entry.id);
        assert_eq!(row[2], entry.title, "{}", entry.id);
        assert_eq!(row[3], entry.category.as_str(), "{}", entry.id);
        assert_eq!(row[4], entry.severity.as_str(), "{}", entry.id);
    }
}

/// Every part keeps to a size a reader can hold: no file under `src/` over 600 lines.
#[test]
fn no_source_file_is_over_600_lines() {
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, usize)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let lines = std::fs::read_to_string(&path).unwrap().lines().count();
                out.push((path.display().to_string(), lines));
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 20);
    let long: Vec<_> = files.iter().filter(|(_, n)| *n > 600).collect();
    assert!(long.is_empty(), "{long:?}");
}

/// The fenced block that follows `marker` in the README.
fn block_after(readme: &str, marker: &str) -> String {
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in README"));
    let rest = &readme[at..];
    let start = rest.find("```").unwrap();
    let body = &rest[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

#[tokio::test]
async fn the_readme_routing_example_prints_what_the_readme_says() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let toml = block_after(&readme, "Routes send each team its own alerts.");
    let printed = block_after(
        &readme,
        "`openai-watch config check` prints, after the targets:",
    );
    let ws = crate::helpers::Workspace::new();
    let targets = ["prod", "batch"]
        .iter()
        .map(|t| format!("[[targets]]\nname = \"{t}\"\nbase_url = \"http://127.0.0.1:9/v1\"\nprobes = [{{ kind = \"models\", interval = \"1m\" }}]\n"))
        .collect::<String>();
    ws.write_config(&format!("{targets}\n{toml}"));
    let config = ws.config_path();
    let out = crate::helpers::run_cli(
        &["--config", config.to_str().unwrap(), "config", "check"],
        &[],
        ws.dir.path(),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The window's next date moves with the clock; everything else is as printed.
    let strip = |s: &str| s.split("; next from").next().unwrap().to_string();
    let got: Vec<String> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("alert channels:"))
        .map(strip)
        .collect();
    let want: Vec<String> = printed.lines().map(strip).collect();
    assert_eq!(got, want, "{stdout}");
}
