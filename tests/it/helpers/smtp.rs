//! A real SMTP server on loopback (mailin-embedded, STARTTLS-capable) that keeps every message
//! it accepts, decoded with mailparse so that tests read subjects and parts as text.

use mailin_embedded::{Handler, Response, Server, SslConfig, response};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A received email, decoded.
#[derive(Debug, Clone)]
pub struct Mail {
    /// When the server accepted it (end of DATA).
    pub accepted_at: std::time::Instant,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub headers: Vec<(String, String)>,
    pub raw: Vec<u8>,
}

impl Mail {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
struct Collector {
    buf: Vec<u8>,
    inbox: Arc<Mutex<Vec<Mail>>>,
    /// When set, every RCPT TO gets this reply instead of 250.
    refuse: Arc<Mutex<Option<Response>>>,
}

impl Handler for Collector {
    fn rcpt(&mut self, _to: &str) -> Response {
        self.refuse.lock().unwrap().clone().unwrap_or(response::OK)
    }

    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        self.buf.clear();
        response::OK
    }
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(buf);
        Ok(())
    }
    fn data_end(&mut self) -> Response {
        let raw = std::mem::take(&mut self.buf);
        let parsed = mailparse::parse_mail(&raw).expect("a well-formed email");
        let headers = parsed
            .headers
            .iter()
            .map(|h| (h.get_key(), h.get_value()))
            .collect();
        let subject =
            mailparse::MailHeaderMap::get_first_value(parsed.headers.as_slice(), "Subject")
                .unwrap_or_default();
        let mut text = String::new();
        let mut html = String::new();
        for part in parsed.parts() {
            match part.ctype.mimetype.as_str() {
                "text/plain" => text = part.get_body().unwrap(),
                "text/html" => html = part.get_body().unwrap(),
                _ => {}
            }
        }
        self.inbox.lock().unwrap().push(Mail {
            accepted_at: std::time::Instant::now(),
            subject,
            text,
            html,
            headers,
            raw,
        });
        response::OK
    }
}

/// The server runs on its own threads for the rest of the test process.
pub struct SmtpServer {
    pub port: u16,
    inbox: Arc<Mutex<Vec<Mail>>>,
    refuse: Arc<Mutex<Option<Response>>>,
}

impl SmtpServer {
    /// Serves on `listener`; with `tls` = (cert, key) PEM paths, STARTTLS is offered.
    pub fn start(listener: TcpListener, tls: Option<(&Path, &Path)>) -> SmtpServer {
        // The server's rustls needs the process-wide crypto provider the product uses.
        openai_watch::tls::install_crypto_provider();
        let port = listener.local_addr().unwrap().port();
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let refuse = Arc::new(Mutex::new(None));
        let mut server = Server::new(Collector {
            buf: Vec::new(),
            inbox: inbox.clone(),
            refuse: refuse.clone(),
        });
        let ssl = match tls {
            Some((cert, key)) => SslConfig::SelfSigned {
                cert_path: cert.display().to_string(),
                key_path: key.display().to_string(),
            },
            None => SslConfig::None,
        };
        server
            .with_name("localhost")
            .with_ssl(ssl)
            .unwrap()
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        SmtpServer {
            port,
            inbox,
            refuse,
        }
    }

    /// Refuses every recipient with `reply` (e.g. 451 or 550), or accepts again with `None`.
    pub fn refuse(&self, reply: Option<Response>) {
        *self.refuse.lock().unwrap() = reply;
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.inbox.lock().unwrap().clone()
    }
}

/// Writes a self-signed certificate for `localhost` and its key; returns (cert, key) paths.
pub fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.join("smtp-cert.pem");
    let key = dir.join("smtp-key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}
