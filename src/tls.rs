//! TLS set-up shared by the HTTP client and the SMTP client: rustls with the ring provider
//! (no OpenSSL, no C build).

/// The redirect policy of every HTTP client that may carry a secret or read an upstream
/// answer: followed on the first request's own origin only (at most 5 hops), never to
/// another host.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|f| f.origin() == attempt.url().origin());
        if same_origin && attempt.previous().len() < 5 {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// Installs the ring crypto provider for rustls once per process; later calls do nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
