//! The TLS crypto provider for cloud backends.
//!
//! object_store's HTTP client uses rustls without a built-in provider here, so that the whole
//! binary runs on one crypto library (`ring`). rustls needs a process-wide provider installed
//! before the first client is built; this does it once.

/// Installs ring as rustls's process-wide provider, unless one is installed already.
#[cfg(feature = "cloud")]
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means another part of the program installed a provider first: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
