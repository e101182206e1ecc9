//! `completions` and `man`: shell completions and manual pages, generated from the one
//! command-line definition in `cli.rs`, so that they cannot disagree with `--help`.

use super::Exit;
use crate::cli::Cli;
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

const NAME: &str = "openai-watch";

/// Writes the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut impl Write) -> anyhow::Result<Exit> {
    clap_complete::generate(shell, &mut Cli::command(), NAME, out);
    Ok(Exit::Success)
}

/// Writes the main page to `out`, or every page into `dir` and their names to `out`.
pub fn man(dir: Option<&Path>, out: &mut impl Write) -> anyhow::Result<Exit> {
    use anyhow::Context;
    match dir {
        None => match clap_mangen::Man::new(Cli::command()).render(out) {
            // `openai-watch man | head`: the reader has what it wanted.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            result => result.context("cannot write the manual page")?,
        },
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // generate_to builds the command itself (without the `help` pseudo-command).
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            let mut pages: Vec<_> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "1"))
                .collect();
            pages.sort();
            for page in pages {
                writeln!(out, "{}", page.display())?;
            }
        }
    }
    Ok(Exit::Success)
}
