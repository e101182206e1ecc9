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

/// A duration that must be longer than zero.
pub(super) fn positive_dur<'de, D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
    let v = Dur::deserialize(d)?;
    if v.0.is_zero() {
        return Err(serde::de::Error::custom("must be longer than 0s"));
    }
    Ok(v)
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
    let url = reqwest::Url::parse(s.trim())
        .map_err(|e| serde::de::Error::custom(format!("invalid URL {s:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(serde::de::Error::custom(format!(
            "invalid URL {s:?}: must be http:// or https:// with a host"
        )));
    }
    Ok(url)
}

pub(super) fn opt_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<reqwest::Url>, D::Error> {
    url(d).map(Some)
}
