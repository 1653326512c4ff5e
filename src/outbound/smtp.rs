//! SMTP submission with lettre's low-level connection, driven step by step so that a failure
//! can be placed: before the message data was sent (safe to retry), or after it was sent and
//! before the server's reply to the final "." (RFC 5321 §4.1.1.4): then it may or may not have
//! been delivered, and the request becomes SendUnknown instead of being guessed.

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use secrecy::{ExposeSecret, SecretString};

use super::render::RenderedRequest;
use super::transport::SendOutcome;
use crate::tls::TlsMode;

/// `[smtp]` settings.
#[derive(Clone)]
pub struct SmtpSettings {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// Name the certificate must carry (default: `host`).
    pub tls_server_name: Option<String>,
    /// Extra trusted CA (PEM), for a private or test CA. There is no option to skip checks.
    pub ca_file: Option<PathBuf>,
    /// AUTH user.
    pub username: Option<String>,
    /// AUTH password.
    pub password: Option<SecretString>,
    /// Deadline for connecting and for each command.
    pub timeout: Duration,
    /// EHLO name.
    pub hello_name: String,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .finish()
    }
}

/// One SMTP client, reusing its connection between messages.
pub struct SmtpSender {
    settings: SmtpSettings,
    conn: Option<AsyncSmtpConnection>,
}

fn describe(resp: &Response) -> String {
    format!(
        "{} {}",
        resp.code(),
        resp.message().collect::<Vec<_>>().join(" ")
    )
}

/// Maps an error from a step BEFORE the message data went out: nothing was delivered.
fn before_data(step: &str, e: &lettre::transport::smtp::Error) -> SendOutcome {
    if e.is_permanent() {
        SendOutcome::Permanent(format!("{step}: {e}"))
    } else {
        SendOutcome::Transient(format!("{step}: {e}"))
    }
}

impl SmtpSender {
    /// A sender; connects on first use.
    pub fn new(settings: SmtpSettings) -> Self {
        SmtpSender {
            settings,
            conn: None,
        }
    }

    fn tls_parameters(&self) -> Result<TlsParameters, String> {
        let name = self
            .settings
            .tls_server_name
            .clone()
            .unwrap_or_else(|| self.settings.host.clone());
        let mut b = TlsParameters::builder(name);
        if let Some(ca) = &self.settings.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("cannot read smtp.ca_file {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("smtp.ca_file {}: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls().map_err(|e| format!("TLS set-up: {e}"))
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, String> {
        let s = &self.settings;
        let hello = ClientId::Domain(s.hello_name.clone());
        let mut conn = match s.tls {
            TlsMode::Tls => AsyncSmtpConnection::connect_tokio1(
                (s.host.as_str(), s.port),
                Some(s.timeout),
                &hello,
                Some(self.tls_parameters()?),
                None,
            )
            .await
            .map_err(|e| format!("connecting to {}:{}: {e}", s.host, s.port))?,
            _ => {
                // Our own socket, for TCP_NODELAY: lettre writes the content and the final
                // "." separately, and with Nagle's algorithm the second write waits for the
                // server's delayed ACK (about 40 ms per message).
                let tcp = tokio::time::timeout(
                    s.timeout,
                    tokio::net::TcpStream::connect((s.host.as_str(), s.port)),
                )
                .await
                .map_err(|_| format!("connecting to {}:{}: timed out", s.host, s.port))?
                .map_err(|e| format!("connecting to {}:{}: {e}", s.host, s.port))?;
                let _ = tcp.set_nodelay(true);
                tokio::time::timeout(
                    s.timeout,
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello),
                )
                .await
                .map_err(|_| format!("greeting from {}:{}: timed out", s.host, s.port))?
                .map_err(|e| format!("connecting to {}:{}: {e}", s.host, s.port))?
            }
        };
        if s.tls == TlsMode::StartTls {
            let params = self.tls_parameters()?;
            conn.starttls(params, &hello)
                .await
                .map_err(|e| format!("STARTTLS with {}: {e}", s.host))?;
        }
        if let (Some(user), Some(pass)) = (&s.username, &s.password) {
            let creds = Credentials::new(user.clone(), pass.expose_secret().to_owned());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds)
                .await
                .map_err(|e| format!("AUTH as {user} at {}: {e}", s.host))?;
        }
        Ok(conn)
    }

    /// Sends one message (MAIL, RCPT..., DATA, content).
    pub async fn send(&mut self, msg: &RenderedRequest) -> SendOutcome {
        // A kept connection may have been closed by the server while idle: NOOP tells.
        let kept = match self.conn.take() {
            Some(mut c) if !c.has_broken() => c.test_connected().await.then_some(c),
            _ => None,
        };
        let mut conn = match kept {
            Some(c) => c,
            None => match tokio::time::timeout(self.settings.timeout * 2, self.connect()).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return SendOutcome::Transient(e),
                Err(_) => {
                    return SendOutcome::Transient(format!(
                        "connecting to {} timed out",
                        self.settings.host
                    ));
                }
            },
        };
        // R01 wants 8-bit bodies; never downgrade (RFC 6152): a relay without 8BITMIME is a
        // configuration problem, so the request waits.
        if !conn.server_info().supports_feature(Extension::EightBitMime) {
            conn.abort().await;
            return SendOutcome::Transient(format!(
                "{} does not offer 8BITMIME, which R01's 8-bit requests need",
                self.settings.host
            ));
        }
        let t = self.settings.timeout;
        let mail = Mail::new(
            Some(msg.from.clone()),
            vec![MailParameter::Body(MailBodyParameter::EightBitMime)],
        );
        let outcome = async {
            match tokio::time::timeout(t, conn.command(mail)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(before_data("MAIL FROM", &e)),
                Err(_) => return Err(SendOutcome::Transient("MAIL FROM timed out".into())),
            }
            for r in &msg.recipients {
                match tokio::time::timeout(t, conn.command(Rcpt::new(r.clone(), vec![]))).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(before_data(&format!("RCPT TO:<{r}>"), &e)),
                    Err(_) => return Err(SendOutcome::Transient("RCPT TO timed out".into())),
                }
            }
            match tokio::time::timeout(t, conn.command(Data)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(before_data("DATA", &e)),
                Err(_) => return Err(SendOutcome::Transient("DATA timed out".into())),
            }
            // From here on the content goes out: a broken link means "unknown". lettre adds
            // the CRLF "." CRLF end marker (RFC 5321 §4.1.1.4) after the content, so the
            // content's own last CRLF is left to it.
            match tokio::time::timeout(
                t,
                conn.message(msg.bytes.strip_suffix(b"\r\n").unwrap_or(&msg.bytes)),
            )
            .await
            {
                Ok(Ok(resp)) => Ok(describe(&resp)),
                Ok(Err(e)) if e.is_permanent() => {
                    Err(SendOutcome::Permanent(format!("end of data: {e}")))
                }
                Ok(Err(e)) if e.is_transient() => {
                    Err(SendOutcome::Transient(format!("end of data: {e}")))
                }
                Ok(Err(e)) => Err(SendOutcome::Unknown(format!(
                    "the connection failed after the message data was sent: {e}"
                ))),
                Err(_) => Err(SendOutcome::Unknown(
                    "no reply to the end of the message data within the timeout".into(),
                )),
            }
        }
        .await;
        match outcome {
            Ok(reply) => {
                self.conn = Some(conn);
                SendOutcome::Sent(reply)
            }
            Err(o) => {
                // After a refusal the session may be mid-transaction: start afresh next time.
                conn.abort().await;
                o
            }
        }
    }

    /// Says QUIT if connected.
    pub async fn close(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), c.quit()).await;
        }
    }
}
