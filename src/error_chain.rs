//! An error and its causes on one line, for logs and for the reasons shown to operators.

/// An `anyhow` error and its causes on one line, like `error_chain`: what `{e:#}` prints,
/// without the causes that a message already quotes (an error that names its source in its
/// text and also gives it as its source would otherwise say it twice).
pub fn anyhow_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The error and its causes on one line, e.g. "error sending request: dns error: …"; a cause
/// whose text is already part of the line is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        #[derive(Debug, thiserror::Error)]
        #[error("cannot use the lock file x.lock: {source}")]
        struct Lock {
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Lock { source: io }).context("cannot start");
        assert_eq!(
            anyhow_chain(&e),
            "cannot start: cannot use the lock file x.lock: No such file"
        );
    }
}
