//! Where rendered requests go: SMTP, the local `sendmail` binary, or a directory of .eml files
//! (the embedded default, for machines without a mail server).

use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::render::RenderedRequest;
use super::smtp::SmtpSender;

/// What became of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted; the server's words.
    Sent(String),
    /// Failed for now (connection refused, 4xx, auth trouble): try again later.
    Transient(String),
    /// Refused for good (5xx): the request fails.
    Permanent(String),
    /// The link broke after the message data was sent: it may or may not have gone.
    Unknown(String),
}

/// A configured transport.
pub enum Transport {
    /// Writes `<token>.eml` files into the directory (atomically: temp file, then rename).
    Dir(PathBuf),
    /// Pipes the message to `sendmail -i -f <from> -- <recipients>`.
    Sendmail(PathBuf),
    /// SMTP (submission) through lettre, one reused connection.
    Smtp(Box<SmtpSender>),
}

impl Transport {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Dir(_) => "dir",
            Transport::Sendmail(_) => "sendmail",
            Transport::Smtp(_) => "smtp",
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, msg: &RenderedRequest, token: &str) -> SendOutcome {
        match self {
            Transport::Dir(dir) => write_to_dir(dir, msg, token).await,
            Transport::Sendmail(bin) => sendmail(bin, msg).await,
            Transport::Smtp(s) => s.send(msg).await,
        }
    }

    /// Closes any open connection (on shutdown).
    pub async fn close(&mut self) {
        if let Transport::Smtp(s) = self {
            s.close().await;
        }
    }
}

/// Writes the message as `<token>.eml`: a temp file, synced, then renamed into place. All of
/// it runs in ONE blocking task (tokio's `fs` would hop to the blocking pool for each call).
async fn write_to_dir(dir: &Path, msg: &RenderedRequest, token: &str) -> SendOutcome {
    let (dir, bytes, token) = (dir.to_path_buf(), msg.bytes.clone(), token.to_owned());
    let shown = dir.display().to_string();
    let result = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{token}.eml.tmp"));
        let path = dir.join(format!("{token}.eml"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        Ok::<_, std::io::Error>(path)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    match result {
        Ok(path) => SendOutcome::Sent(format!("written to {}", path.display())),
        Err(e) => SendOutcome::Transient(format!("cannot write to {shown}: {e}")),
    }
}

/// sendmail(8) conventions: exit 0 accepted; EX_TEMPFAIL (75) try later; others refused.
async fn sendmail(bin: &Path, msg: &RenderedRequest) -> SendOutcome {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("-i").arg("-f").arg(&msg.from).arg("--");
    for r in &msg.recipients {
        cmd.arg(r);
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return SendOutcome::Transient(format!("cannot run {}: {e}", bin.display())),
    };
    if let Some(mut stdin) = child.stdin.take() {
        if let Err(e) = stdin.write_all(&msg.bytes).await {
            return SendOutcome::Transient(format!("writing to {} failed: {e}", bin.display()));
        }
        drop(stdin);
    }
    match child.wait_with_output().await {
        Ok(out) if out.status.success() => {
            SendOutcome::Sent(format!("accepted by {}", bin.display()))
        }
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            let text = format!("{} exited with {}: {err}", bin.display(), out.status);
            if out.status.code() == Some(75) {
                SendOutcome::Transient(text)
            } else {
                SendOutcome::Permanent(text)
            }
        }
        Err(e) => SendOutcome::Transient(format!("waiting for {} failed: {e}", bin.display())),
    }
}
