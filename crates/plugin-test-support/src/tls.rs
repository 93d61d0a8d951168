//! TLS for the fake provider servers, so the production TLS path (rustls with the platform's
//! root certificates, as the plugins ship) is exercised: a self-signed certificate for
//! `127.0.0.1` and `localhost` is made once per test process and installed as the only
//! trusted root through `SSL_CERT_FILE`, which `rustls-native-certs` (used by reqwest and
//! tokio-tungstenite) reads instead of the system store.
//!
//! Call [`TestTls::shared`] before building any client in the test process: HTTP clients load
//! their roots when built.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

pub use tokio_rustls::server::TlsStream;

/// A self-signed certificate trusted by the clients of this test process.
pub struct TestTls {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Where the certificate was written (the value of `SSL_CERT_FILE`).
    pub cert_file: PathBuf,
    acceptor: TlsAcceptor,
}

impl TestTls {
    /// The process's certificate, made and trusted on first use.
    pub fn shared() -> &'static TestTls {
        static TLS: OnceLock<TestTls> = OnceLock::new();
        TLS.get_or_init(TestTls::create)
    }

    fn create() -> TestTls {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
                .expect("self-signed certificate");
        let cert_pem = cert.pem();
        let cert_file = std::env::temp_dir().join(format!(
            "livekit-plugin-test-ca-{}-{}.pem",
            std::process::id(),
            cert_pem.len()
        ));
        std::fs::write(&cert_file, &cert_pem).expect("write the test certificate");
        // Every client root store of this process now holds only this certificate.
        std::env::set_var("SSL_CERT_FILE", &cert_file);
        std::env::remove_var("SSL_CERT_DIR");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der())),
            )
            .expect("server certificate");
        TestTls {
            cert_pem,
            cert_file,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }
    }

    /// Runs the server side of a TLS handshake.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.acceptor.accept(tcp).await
    }
}

/// A TCP listener on 127.0.0.1 whose connections are TLS (handshakes that fail are skipped).
pub struct TlsListener {
    listener: TcpListener,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl TlsListener {
    /// Binds 127.0.0.1 on a free port (and trusts the shared certificate).
    pub async fn bind() -> Self {
        let _ = TestTls::shared();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        Self { listener, addr }
    }

    /// The next connection whose TLS handshake succeeded.
    pub async fn accept(&mut self) -> (TlsStream<TcpStream>, SocketAddr) {
        loop {
            let Ok((tcp, peer)) = self.listener.accept().await else {
                continue;
            };
            if let Ok(tls) = TestTls::shared().accept(tcp).await {
                return (tls, peer);
            }
        }
    }
}
