//! TLS set-up shared by the HTTP client and the SMTP client: rustls with the ring provider
//! (no OpenSSL, no C build).

/// Installs the ring crypto provider for rustls once per process; later calls do nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
