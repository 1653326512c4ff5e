//! TLS settings shared by the SMTP and IMAP drivers.

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text (a relay on this machine).
    None,
    /// STARTTLS (RFC 3207), required: no silent fallback to plain text.
    StartTls,
    /// Implicit TLS (RFC 8314, port 465).
    Tls,
}
