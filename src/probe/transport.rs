//! Why a request got no answer: the transport error kind, and whether the failure was this
//! machine's own.

use crate::domain::TransportErrorKind;
use crate::error_chain::error_chain;
use std::error::Error as _;

pub(super) fn is_local_failure(e: &reqwest::Error) -> bool {
    // Linux errno values.
    const LOCAL: [i32; 5] = [12, 23, 24, 99, 105];
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.raw_os_error().is_some_and(|code| LOCAL.contains(&code))
        {
            return true;
        }
        source = s.source();
    }
    let chain = error_chain(e).to_ascii_lowercase();
    chain.contains("too many open files") || chain.contains("cannot allocate memory")
}

pub(super) fn transport_kind(e: &reqwest::Error) -> TransportErrorKind {
    if e.is_timeout() {
        return TransportErrorKind::Timeout;
    }
    let mut kind = TransportErrorKind::Connect;
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            kind = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => TransportErrorKind::Refused,
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    TransportErrorKind::Reset
                }
                std::io::ErrorKind::TimedOut => TransportErrorKind::Timeout,
                _ => kind,
            };
        }
        source = s.source();
    }
    if kind == TransportErrorKind::Connect {
        let chain = error_chain(e).to_ascii_lowercase();
        if chain.contains("dns")
            || chain.contains("failed to lookup")
            || chain.contains("name or service not known")
        {
            kind = TransportErrorKind::Dns;
        } else if chain.contains("certificate")
            || chain.contains("tls")
            || chain.contains("handshake")
        {
            kind = TransportErrorKind::Tls;
        } else if !e.is_connect() {
            kind = TransportErrorKind::Reset;
        }
    }
    kind
}
