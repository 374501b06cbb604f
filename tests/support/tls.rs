//! TLS for the test endpoints: a throwaway PKI made at test time
//! ([`Pki`]: a CA, a server certificate for `127.0.0.1` and `localhost`, a
//! client certificate, and an unrelated CA), and [`TlsEndpoint`], an HTTPS
//! stand-in for Prefect's events endpoint that records event POSTs and
//! answers `204`.
//!
//! The endpoint is plain blocking `std::net` plus rustls (herald's own TLS
//! library, with the same ring provider), a thread per connection, like
//! [`MockEndpoint`](super::MockEndpoint). It speaks just enough HTTP/1.1
//! for herald's client (`content-length` bodies, keep-alive); scripting
//! failures is `MockEndpoint`'s job, certificates are this one's. It
//! records why each refused handshake failed, so a test can tell a
//! certificate refusal from any other failure.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use serde_json::Value;
use tempfile::TempDir;

use super::wait_until;

/// How long a connection may sit idle before the endpoint drops it; far
/// above anything a test waits, so only a leaked connection hits it.
const IDLE: Duration = Duration::from_secs(30);
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Whether the endpoint asks for a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Any client may connect.
    None,
    /// Only a client with a certificate signed by the test CA.
    Required,
}

/// A CA with a server and a client certificate, written as PEM files in a
/// temp dir that lives as long as this value.
pub struct Pki {
    dir: TempDir,
    /// The CA certificate herald is told to trust (`ca_file`).
    pub ca_file: PathBuf,
    /// A CA that signed nothing here: trusting it must not help.
    pub other_ca_file: PathBuf,
    /// The client certificate (`client_cert_file`), signed by the CA.
    pub client_cert_file: PathBuf,
    /// Its private key (`client_key_file`), PKCS#8 PEM.
    pub client_key_file: PathBuf,
    ca_der: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivatePkcs8KeyDer<'static>,
}

impl Pki {
    /// Makes fresh keys and certificates.
    ///
    /// # Panics
    /// If rcgen cannot make them or the temp dir cannot be written.
    pub fn new() -> Pki {
        let (ca_params, ca_key) = ca("herald test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
        let ca_der = ca_cert.der().clone();
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".into()])
            .expect("server names");
        params
            .distinguished_name
            .push(DnType::CommonName, "herald test endpoint");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params
            .signed_by(&server_key, &issuer)
            .expect("sign the server certificate");

        let client_key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params
            .distinguished_name
            .push(DnType::CommonName, "herald test agent");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = params
            .signed_by(&client_key, &issuer)
            .expect("sign the client certificate");

        let (other_params, other_key) = ca("an unrelated CA");
        let other_ca = other_params
            .self_signed(&other_key)
            .expect("self-sign the other CA");

        let dir = tempfile::tempdir().expect("temp dir for the PKI");
        let write = |name: &str, text: &str| -> PathBuf {
            let path = dir.path().join(name);
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            path
        };
        let ca_file = write("ca.pem", &ca_pem);
        let other_ca_file = write("other-ca.pem", &other_ca.pem());
        let client_cert_file = write("client.pem", &client_cert.pem());
        let client_key_file = write("client-key.pem", &client_key.serialize_pem());
        Pki {
            ca_file,
            other_ca_file,
            client_cert_file,
            client_key_file,
            ca_der,
            server_chain: vec![server_cert.der().clone()],
            server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
            dir,
        }
    }

    /// The folder holding the PEM files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A rustls server config presenting the server certificate, asking for
    /// a client certificate when `client_auth` says so.
    ///
    /// # Panics
    /// If rustls refuses the test's own certificates.
    pub fn server_config(&self, client_auth: ClientAuth) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("default TLS versions");
        let builder = match client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Required => {
                let mut roots = RootCertStore::empty();
                roots.add(self.ca_der.clone()).expect("the CA is a root");
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(
                self.server_chain.clone(),
                PrivateKeyDer::Pkcs8(self.server_key.clone_key()),
            )
            .expect("the server certificate and key match");
        Arc::new(config)
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params, KeyPair::generate().expect("CA key"))
}

/// Completes a server-side TLS handshake on `stream`, recording why it
/// failed in `errors` when it does.
///
/// # Errors
/// When the handshake fails (the reason is recorded too).
pub fn accept_tls(
    stream: TcpStream,
    config: &Arc<ServerConfig>,
    errors: &Mutex<Vec<String>>,
) -> io::Result<StreamOwned<ServerConnection, TcpStream>> {
    let connection = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(connection, stream);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            lock(errors).push(e.to_string());
            return Err(e);
        }
    }
    Ok(tls)
}

/// One `POST …/events` as the endpoint received it.
#[derive(Debug, Clone)]
pub struct Post {
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    posts: Mutex<Vec<Post>>,
    handshake_errors: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An HTTPS events endpoint on `127.0.0.1:0`. Dropping it stops the
/// listener.
pub struct TlsEndpoint {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TlsEndpoint {
    /// Serves HTTPS with `config` (see [`Pki::server_config`]).
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start(config: Arc<ServerConfig>) -> TlsEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("TLS endpoint cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            thread::Builder::new()
                .name(format!("tls-accept-{}", addr.port()))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(stream) = stream else {
                            thread::sleep(super::POLL);
                            continue;
                        };
                        let (shared, config) = (Arc::clone(&shared), Arc::clone(&config));
                        // Out of threads: the connection closes, the client
                        // sees it and the test reports it.
                        let _ = thread::Builder::new()
                            .name("tls-conn".into())
                            .spawn(move || serve(stream, &config, &shared));
                    }
                })
                .expect("spawn the TLS accept thread")
        };
        TlsEndpoint {
            addr,
            shared,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// The API base URL, `https://127.0.0.1:PORT/api`.
    pub fn url(&self) -> String {
        format!("https://{}/api", self.addr)
    }

    pub fn posts(&self) -> Vec<Post> {
        lock(&self.shared.posts).clone()
    }

    /// Every event of every event POST, flattened.
    pub fn events(&self) -> Vec<Value> {
        self.posts()
            .iter()
            .filter_map(|p| serde_json::from_slice::<Vec<Value>>(&p.body).ok())
            .flatten()
            .collect()
    }

    /// Why each refused handshake failed, as rustls put it.
    pub fn handshake_errors(&self) -> Vec<String> {
        lock(&self.shared.handshake_errors).clone()
    }

    /// Waits until at least `n` events arrived and returns them all.
    ///
    /// # Panics
    /// When `timeout` passes first.
    pub fn wait_for_events(&self, n: usize, timeout: Duration) -> Vec<Value> {
        if wait_until(timeout, || self.events().len() >= n) {
            return self.events();
        }
        panic!(
            "TLS endpoint: wanted {n} events within {timeout:?}, got {}; handshake errors: {:?}",
            self.events().len(),
            self.handshake_errors()
        );
    }

    /// Waits until at least `n` handshakes have failed and returns why.
    ///
    /// # Panics
    /// When `timeout` passes first.
    pub fn wait_for_handshake_errors(&self, n: usize, timeout: Duration) -> Vec<String> {
        if wait_until(timeout, || self.handshake_errors().len() >= n) {
            return self.handshake_errors();
        }
        panic!(
            "TLS endpoint: wanted {n} failed handshakes within {timeout:?}, saw {:?} and {} posts",
            self.handshake_errors(),
            self.posts().len()
        );
    }
}

impl Drop for TlsEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve(stream: TcpStream, config: &Arc<ServerConfig>, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IDLE));
    let Ok(tls) = accept_tls(stream, config, &shared.handshake_errors) else {
        return;
    };
    let mut reader = BufReader::new(tls);
    while let Ok(Some(post)) = read_request(&mut reader) {
        let is_event_post = post.path.ends_with("/events");
        if is_event_post {
            lock(&shared.posts).push(post);
        }
        let answer: &[u8] = if is_event_post {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        } else {
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
        };
        let stream = reader.get_mut();
        if stream
            .write_all(answer)
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
    }
}

/// Reads one request; `None` when the client closed the connection.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Post>> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if reader.read_until(b'\n', &mut head)? == 0 {
            return Ok(None);
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(io::Error::other("request head too large"));
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    if length > MAX_BODY_BYTES {
        return Err(io::Error::other("body too large"));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some(Post {
        path,
        headers,
        body,
    }))
}
