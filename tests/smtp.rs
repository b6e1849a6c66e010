//! A real SMTP server for the notification tests: mailin-embedded on
//! 127.0.0.1 with a random port, plain or with STARTTLS, plus a small TLS
//! front for implicit TLS (smtps), recording every message it accepts in full.
//!
//! It refuses (550) any recipient whose address contains `reject`, and takes
//! the login `mailer` / [`PASSWORD`] once TLS is up.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::response::{AUTH_OK, INVALID_CREDENTIALS, NO_MAILBOX, OK};
use mailin_embedded::{AuthMechanism, Handler, Response, Server, SslConfig};

pub const USER: &str = "mailer";
pub const PASSWORD: &str = "s3cret-Pa55";

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The whole message, headers and body, as it came over the wire.
    pub raw: String,
}

impl Received {
    fn split(&self) -> (&str, &str) {
        self.raw
            .split_once("\r\n\r\n")
            .unwrap_or((self.raw.as_str(), ""))
    }

    /// The header lines, unfolded: (name, value).
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in self.split().0.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.to_string(), value.trim().to_string()));
            }
        }
        headers
    }

    /// The values of a header, by case-insensitive name.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }

    /// The body with `\n` line ends.
    pub fn body(&self) -> String {
        self.split().1.replace("\r\n", "\n")
    }
}

/// A certificate authority and a certificate it signed for 127.0.0.1 and
/// localhost, as PEM files in a temporary directory.
pub struct TestCert {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCert {
    pub fn new() -> TestCert {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "manage test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        TestCert {
            ca_file: write("ca.pem", ca_cert.pem()),
            cert_file: write("cert.pem", cert.pem()),
            key_file: write("key.pem", key.serialize_pem()),
            _dir: dir,
        }
    }
}

#[derive(Clone)]
struct Recorder {
    received: Arc<Mutex<Vec<Received>>>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Recorder {
    fn rcpt(&mut self, to: &str) -> Response {
        if to.contains("reject") {
            NO_MAILBOX
        } else {
            OK
        }
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = from.to_string();
        self.to = to.to_vec();
        self.data.clear();
        OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.received.lock().unwrap().push(Received {
            from: self.from.clone(),
            to: self.to.clone(),
            raw: String::from_utf8_lossy(&self.data).into_owned(),
        });
        OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.auth_login(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        if user == USER && password == PASSWORD {
            AUTH_OK
        } else {
            INVALID_CREDENTIALS
        }
    }
}

/// A running test server. It lives as long as the test process; tests that
/// need a server that is "down" use [`free_port`] and start one later.
pub struct SmtpServer {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A port nothing listens on (for now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn install_crypto() {
    // Both of rustls's providers are compiled into the test binary; pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl SmtpServer {
    /// Plain SMTP on a random port.
    pub fn plain() -> SmtpServer {
        Self::start(free_listener(0), None)
    }

    /// Plain SMTP on the given port (a server coming back).
    pub fn plain_on(port: u16) -> SmtpServer {
        Self::start(free_listener(port), None)
    }

    /// SMTP offering STARTTLS (and AUTH after it) with `cert`.
    pub fn starttls(cert: &TestCert) -> SmtpServer {
        Self::start(free_listener(0), Some(cert))
    }

    /// Implicit TLS: a TLS front on its own port, passing the plain SMTP
    /// session to a server behind it.
    pub fn smtps(cert: &TestCert) -> SmtpServer {
        install_crypto();
        let inner = Self::plain();
        let listener = free_listener(0);
        let port = listener.local_addr().unwrap().port();
        let config = Arc::new(server_config(cert));
        let backend = inner.port;
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let config = Arc::clone(&config);
                std::thread::spawn(move || tls_front(stream, config, backend));
            }
        });
        SmtpServer {
            port,
            received: inner.received,
        }
    }

    fn start(listener: TcpListener, cert: Option<&TestCert>) -> SmtpServer {
        install_crypto();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler = Recorder {
            received: Arc::clone(&received),
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        };
        let mut server = Server::new(handler);
        server
            .with_name("mail.test")
            .with_num_threads(8)
            .with_tcp_listener(listener);
        if let Some(cert) = cert {
            server
                .with_ssl(SslConfig::SelfSigned {
                    cert_path: path_string(&cert.cert_file),
                    key_path: path_string(&cert.key_file),
                })
                .unwrap()
                .with_auth(AuthMechanism::Plain)
                .with_auth(AuthMechanism::Login);
        }
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        SmtpServer { port, received }
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The subjects of the messages received so far, in order.
    pub fn subjects(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|m| m.header("Subject").unwrap_or_default())
            .collect()
    }

    /// Wait until `count` messages have arrived (at most 20 s).
    pub fn wait_for(&self, count: usize) -> Vec<Received> {
        crate::harness::wait_for(Duration::from_secs(20), "mail to arrive", || {
            self.received().len() >= count
        });
        self.received()
    }
}

fn free_listener(port: u16) -> TcpListener {
    // A port just released may linger briefly; retry a little.
    let mut tries = 0;
    loop {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => return listener,
            Err(e) if tries < 50 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("cannot listen on 127.0.0.1:{port}: {e}"),
        }
    }
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn server_config(cert: &TestCert) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_file(&cert.cert_file).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&cert.key_file).unwrap();
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
}

/// Terminate TLS on `client` and relay the plain bytes to the backend, both
/// ways. The TLS stream is shared behind a lock; its reads time out often so
/// that the other direction can write.
fn tls_front(client: TcpStream, config: Arc<rustls::ServerConfig>, backend: u16) {
    let Ok(connection) = rustls::ServerConnection::new(config) else {
        return;
    };
    let Ok(mut plain) = TcpStream::connect(("127.0.0.1", backend)) else {
        return;
    };
    let _ = client.set_read_timeout(Some(Duration::from_millis(10)));
    let tls = Arc::new(Mutex::new(rustls::StreamOwned::new(connection, client)));
    let Ok(mut plain_reader) = plain.try_clone() else {
        return;
    };
    let to_client = Arc::clone(&tls);
    std::thread::spawn(move || {
        // Writing before the handshake is done would drive it from this
        // thread, whose reads time out; the other thread finishes it.
        while to_client.lock().unwrap().conn.is_handshaking() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut buf = [0u8; 8192];
        loop {
            match plain_reader.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let mut tls = to_client.lock().unwrap();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                    let _ = tls.sock.shutdown(std::net::Shutdown::Both);
                    return;
                }
                Ok(n) => {
                    let mut tls = to_client.lock().unwrap();
                    if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut buf = [0u8; 8192];
    loop {
        let result = tls.lock().unwrap().read(&mut buf);
        match result {
            Ok(0) => break,
            Ok(n) => {
                if plain.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => break,
        }
    }
    let _ = plain.shutdown(std::net::Shutdown::Both);
}
