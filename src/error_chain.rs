//! An error and its causes on one line, for logs and for the reasons shown to operators.

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
