//! Masking of secrets in text that came from outside (upstream messages, error strings):
//! every `sk-…` token and every configured secret is cut down to its last four characters
//! before the text is stored, logged, shown or sent.

use std::sync::LazyLock;

/// Longest upstream message kept (SPEC §4: truncated to 1 KiB).
pub const MAX_MESSAGE_BYTES: usize = 1024;

static SK_TOKEN: LazyLock<regex_lite::Regex> = LazyLock::new(|| {
    // `*` is included so that a key the API already masked (`sk-abc12****wxyz`) is masked whole.
    regex_lite::Regex::new(r"sk-[A-Za-z0-9_\-\*]{4,}").expect("static pattern compiles")
});

fn last_four(s: &str) -> &str {
    let start = s.char_indices().rev().nth(3).map_or(0, |(i, _)| i);
    &s[start..]
}

/// Masks `text`: the given secrets (configured API keys, passwords) first, then any
/// `sk-` token. Secrets shorter than 8 characters are replaced whole.
pub fn mask(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(secret) {
            let replacement = if secret.chars().count() < 8 {
                "…".to_string()
            } else if secret.starts_with("sk-") {
                format!("sk-…{}", last_four(secret))
            } else {
                format!("…{}", last_four(secret))
            };
            out = out.replace(secret, &replacement);
        }
    }
    SK_TOKEN
        .replace_all(&out, |caps: &regex_lite::Captures<'_>| {
            format!("sk-…{}", last_four(&caps[0]))
        })
        .into_owned()
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut with `…`.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// Masks and truncates an upstream message for storage and display.
pub fn clean_message(text: &str, secrets: &[&str]) -> String {
    let collapsed: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(mask(collapsed.trim(), secrets), MAX_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sk_tokens_keep_only_their_last_four_characters() {
        let m = mask(
            "Incorrect API key provided: sk-abc12***************************wxyz. You can",
            &[],
        );
        assert_eq!(m, "Incorrect API key provided: sk-…wxyz. You can");
        let m = mask("key sk-proj-AbCdEf0123456789_xyz end", &[]);
        assert_eq!(m, "key sk-…_xyz end");
    }

    #[test]
    fn configured_secrets_are_masked_even_without_the_sk_prefix() {
        let m = mask("token=localsecret12345 ok", &["localsecret12345"]);
        assert_eq!(m, "token=…2345 ok");
        assert!(!m.contains("localsecret"));
        assert_eq!(mask("pw abc used", &["abc"]), "pw … used");
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        let s = "é".repeat(1000);
        let t = truncate(s, MAX_MESSAGE_BYTES);
        assert!(t.len() <= MAX_MESSAGE_BYTES);
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short".into(), 10), "short");
    }

    #[test]
    fn clean_message_removes_control_characters() {
        assert_eq!(clean_message(" a\nb\u{1b}[31m ", &[]), "a b [31m");
    }
}
