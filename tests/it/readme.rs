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
