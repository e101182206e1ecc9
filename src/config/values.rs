//! Value types of the config file that carry their own validation: durations, target names,
//! category lists and URLs. Each one refuses a bad value while the file is read, so that the
//! error gets the value's line and column.

use crate::domain::Category;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A duration written as `"30s"`, `"15m"`, `"4h"`, `"14d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: write a number and a unit, such as \"30s\", \"15m\", \"4h\" or \"14d\""
            ))
        })
    }
}

/// A share above 0 and at most 1.
pub(super) fn ratio<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is not a ratio above 0 and at most 1"
        )))
    }
}

/// A factor above 1 and at most 1000.
pub(super) fn factor<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v > 1.0 && v <= 1000.0 {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is not a factor above 1 and at most 1000"
        )))
    }
}

/// A target name: 1 to 64 characters of `[a-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetName(String);

impl TargetName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let valid = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(TargetName(s.to_string()))
        } else {
            Err(format!(
                "invalid target name {s:?}: use 1 to 64 characters of a-z, 0-9, '_' and '-'"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TargetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TargetName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TargetName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A category that can be alerted on: any but `ok`.
fn category<'de, D: Deserializer<'de>>(d: D) -> Result<Category, D::Error> {
    let s = String::deserialize(d)?;
    match Category::parse(&s) {
        Some(Category::Ok) | None => {
            let valid: Vec<&str> = Category::ALL
                .iter()
                .filter(|c| **c != Category::Ok)
                .map(|c| c.as_str())
                .collect();
            Err(serde::de::Error::custom(format!(
                "unknown category {s:?}; expected one of {}",
                valid.join(", ")
            )))
        }
        Some(c) => Ok(c),
    }
}

pub(super) fn categories<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Category>, D::Error> {
    #[derive(Deserialize)]
    struct C(#[serde(deserialize_with = "category")] Category);
    let list = Vec::<C>::deserialize(d)?;
    Ok(list.into_iter().map(|c| c.0).collect())
}

pub(super) fn opt_categories<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Category>>, D::Error> {
    categories(d).map(Some)
}

/// An `http://` or `https://` URL with a host.
pub(super) fn url<'de, D: Deserializer<'de>>(d: D) -> Result<reqwest::Url, D::Error> {
    let s = String::deserialize(d)?;
    parse_url(s.trim()).map_err(serde::de::Error::custom)
}

/// A dashboard URL given on the command line (`--url`), ending in `/` so that API paths
/// join under it.
pub fn parse_dashboard_url(s: &str) -> Result<reqwest::Url, String> {
    let mut url = parse_url(s.trim())?;
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

/// An `http://` or `https://` URL with a host and without a user name or password: a
/// password in a URL would travel beside the API key and show wherever the URL is shown, so
/// it is refused (the key goes in `api_key_env`, `api_key_file` or `api_key_credential`).
/// Errors never repeat the userinfo.
pub(super) fn parse_url(s: &str) -> Result<reqwest::Url, String> {
    let shown = without_userinfo(s);
    let url = reqwest::Url::parse(s).map_err(|e| format!("invalid URL {shown:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "invalid URL {shown:?}: must be http:// or https:// with a host"
        ));
    }
    // `http:///v1` parses with "v1" as the host: the author meant a path without a host.
    if s.split_once("://")
        .is_some_and(|(_, rest)| rest.starts_with('/'))
    {
        return Err(format!(
            "invalid URL {shown:?}: no host between \"//\" and the path"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "invalid URL {shown:?}: a user name or password in the URL is not allowed; \
             give the API key with api_key_env, api_key_file or api_key_credential"
        ));
    }
    Ok(url)
}

/// Checks a PostgreSQL URL before it is used, saying what is wrong without ever repeating
/// it: the URL carries the database password. A password with `/`, `?`, `#` or `@` that is
/// not percent-encoded makes the rest of the URL parse as a path, so an `@` after the host is
/// refused rather than guessed at.
pub fn check_postgres_url(url: &str) -> Result<(), String> {
    const SSLMODES: [&str; 6] = [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ];
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[authority_end..].contains('@') {
        return Err(
            "the URL has an '@' after the host: percent-encode a password that holds '/', '?', \
             '#' or '@' (%2F, %3F, %23, %40)"
                .into(),
        );
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        let what = match e {
            url::ParseError::InvalidPort => "its port is not a number from 1 to 65535".to_string(),
            other => other.to_string(),
        };
        format!("the URL does not parse: {what}")
    })?;
    if parsed.port() == Some(0) {
        return Err("the URL does not parse: its port is not a number from 1 to 65535".into());
    }
    for (key, value) in parsed.query_pairs() {
        if key == "sslmode" && !SSLMODES.contains(&value.as_ref()) {
            return Err(format!(
                "sslmode must be one of {}, not {value:?}",
                SSLMODES.join(", ")
            ));
        }
    }
    Ok(())
}

/// `s` with anything between `://` and the `@` of the authority replaced by `…`.
fn without_userinfo(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
        None => s.to_string(),
    }
}

pub(super) fn opt_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<reqwest::Url>, D::Error> {
    url(d).map(Some)
}

/// A duration within `[MIN_MS, MAX_MS]` milliseconds.
pub(super) fn dur_within<'de, D: Deserializer<'de>, const MIN_MS: u64, const MAX_MS: u64>(
    d: D,
) -> Result<Dur, D::Error> {
    let v = Dur::deserialize(d)?;
    check_within(
        v.0,
        Duration::from_millis(MIN_MS),
        Duration::from_millis(MAX_MS),
    )
    .map(|()| v)
    .map_err(serde::de::Error::custom)
}

/// An optional duration within `[MIN_MS, MAX_MS]` milliseconds.
pub(super) fn opt_dur_within<'de, D: Deserializer<'de>, const MIN_MS: u64, const MAX_MS: u64>(
    d: D,
) -> Result<Option<Dur>, D::Error> {
    dur_within::<D, MIN_MS, MAX_MS>(d).map(Some)
}

/// Zero (off), or a duration within `[MIN_MS, MAX_MS]` milliseconds.
pub(super) fn dur_off_or_within<'de, D: Deserializer<'de>, const MIN_MS: u64, const MAX_MS: u64>(
    d: D,
) -> Result<Dur, D::Error> {
    let v = Dur::deserialize(d)?;
    if v.0.is_zero() {
        return Ok(v);
    }
    check_within(
        v.0,
        Duration::from_millis(MIN_MS),
        Duration::from_millis(MAX_MS),
    )
    .map(|()| v)
    .map_err(|e| serde::de::Error::custom(format!("{e} (or \"0s\" for off)")))
}

/// Refuses a duration outside `[min, max]`, naming both bounds.
pub(super) fn check_within(v: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if v < min || v > max {
        return Err(format!(
            "{} is out of range: give between {} and {}",
            humantime::format_duration(v),
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_userinfo_or_without_a_host_are_refused_without_echoing_the_password() {
        for bad in [
            "https://user:hunter2@api.example.com/v1",
            "https://hunter2@api.example.com/v1",
            "http:///v1",
            "ftp://api.example.com/v1",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert!(parse_url("https://api.openai.com/v1").is_ok());
        assert!(parse_url("http://127.0.0.1:9090/t/x/v1").is_ok());
        assert_eq!(without_userinfo("https://a:b@h/p@q"), "https://…@h/p@q");
    }
}
