//! Secrets named in the config (`*_env`, `*_file`, `*_credential`) and how they are read.
//! Errors point at the key that names the source; values never appear in them.

use super::error::{ConfigError, Source};
use secrecy::{ExposeSecret, SecretString};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Where a secret comes from: at most one of `*_env`, `*_file` or `*_credential`.
#[derive(Debug, Clone, Default)]
pub struct SecretSources {
    pub env: Option<Spanned<String>>,
    pub file: Option<Spanned<PathBuf>>,
    pub credential: Option<Spanned<String>>,
}

/// A secret as read, before its checks: the value and where it came from.
struct ReadSecret {
    value: String,
    /// Span of the key that names the source.
    span: Range<usize>,
    /// That key, e.g. `targets[0].api_key_env`.
    key: String,
    /// The source in words, e.g. "environment variable OPENAI_API_KEY".
    origin: String,
}

impl SecretSources {
    /// Refuses more than one source for one secret.
    pub fn check_one(&self, src: &Source, what: &str, key: &str) -> Result<(), ConfigError> {
        let spans: Vec<_> = [
            self.env.as_ref().map(|v| v.span()),
            self.file.as_ref().map(|v| v.span()),
            self.credential.as_ref().map(|v| v.span()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if spans.len() > 1 {
            return Err(src.err_at(
                spans[1].clone(),
                key,
                format!("give only one of {what}_env, {what}_file and {what}_credential"),
            ));
        }
        Ok(())
    }

    /// Reads the secret from its source; `None` when no source is configured. `key` is the
    /// secret's key without the source suffix, e.g. `targets[0].api_key`.
    pub fn read(&self, src: &Source, key: &str) -> Result<Option<SecretString>, ConfigError> {
        let Some(read) = self.read_raw(src, key)? else {
            return Ok(None);
        };
        let v = read.value.trim();
        if v.is_empty() {
            Err(src.err_at(read.span, read.key, format!("{} is empty", read.origin)))
        } else if v.chars().any(|c| c.is_control() || c == ' ') {
            Err(src.err_at(
                read.span,
                read.key,
                format!("{} contains spaces or control characters", read.origin),
            ))
        } else {
            Ok(Some(SecretString::from(v.to_string())))
        }
    }

    fn read_raw(&self, src: &Source, key: &str) -> Result<Option<ReadSecret>, ConfigError> {
        if let Some(var) = &self.env {
            let name = var.get_ref();
            let k = format!("{key}_env");
            return match std::env::var(name) {
                Ok(value) => Ok(Some(ReadSecret {
                    value,
                    span: var.span(),
                    key: k,
                    origin: format!("environment variable {name}"),
                })),
                Err(std::env::VarError::NotPresent) => Err(src.err_at(
                    var.span(),
                    k,
                    format!("environment variable {name} is not set"),
                )),
                Err(std::env::VarError::NotUnicode(_)) => Err(src.err_at(
                    var.span(),
                    k,
                    format!("environment variable {name} is not valid UTF-8"),
                )),
            };
        }
        if let Some(file) = &self.file {
            let path = file.get_ref();
            let k = format!("{key}_file");
            let value = read_secret_file(path).map_err(|e| {
                src.err_at(
                    file.span(),
                    k.clone(),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            return Ok(Some(ReadSecret {
                value,
                span: file.span(),
                key: k,
                origin: format!("file {}", path.display()),
            }));
        }
        if let Some(cred) = &self.credential {
            let name = cred.get_ref();
            let k = format!("{key}_credential");
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                src.err_at(
                    cred.span(),
                    k.clone(),
                    "CREDENTIALS_DIRECTORY is not set: credentials are given by systemd's LoadCredential=",
                )
            })?;
            if name.contains('/') || name.is_empty() {
                return Err(src.err_at(
                    cred.span(),
                    k,
                    format!("invalid credential name {name:?}"),
                ));
            }
            let path = Path::new(&dir).join(name);
            let value = read_secret_file(&path).map_err(|e| {
                src.err_at(
                    cred.span(),
                    k.clone(),
                    format!("cannot read credential {}: {e}", path.display()),
                )
            })?;
            return Ok(Some(ReadSecret {
                value,
                span: cred.span(),
                key: k,
                origin: format!("credential {name}"),
            }));
        }
        Ok(None)
    }
}

/// A secret file: regular, small, UTF-8.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let bytes = super::files::read_bounded(path, super::files::MAX_SECRET_BYTES)?;
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_string())
}

/// Exposes a secret for use in a request header or for masking. Kept here so that every use
/// is greppable.
pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}
