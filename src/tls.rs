//! TLS set-up every TLS client of herald shares (the sink's HTTP and
//! websocket clients, the probe source's): one process-wide rustls crypto
//! provider, ring. It sits below the sink and the sources so that neither
//! imports the other for it.

use std::sync::Once;

/// Installs ring as rustls's process-wide crypto provider, once; every TLS
/// client calls this before it is built.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider was installed first, which is
        // as good for herald's purposes.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
