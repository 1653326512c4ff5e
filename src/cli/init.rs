//! `regmail init`: creates the secrets the systemd unit hands over as credentials
//! (`LoadCredential=api-token:...`, `registrar-password`, and on request `smtp-password`,
//! `imap-password`) as files private to root (mode 0600 whatever the umask). An existing file
//! is kept. Nothing secret is printed.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The options of `regmail init`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Where the secret files go (the unit's LoadCredential= paths point there); default: the
    /// directory of `--config`, else /etc/regmail.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Create the API token only (scripts/install.sh does this; the passwords come later).
    #[arg(long)]
    pub token_only: bool,
    /// Also read the SMTP AUTH password (the next line of standard input).
    #[arg(long)]
    pub smtp_password: bool,
    /// Also read the IMAP password (the next line of standard input).
    #[arg(long)]
    pub imap_password: bool,
    /// Instead of secrets, write a systemd drop-in for the unit: IPAddressAllow= for the
    /// configured SMTP and IMAP servers (resolved now) and LoadCredential= for their passwords.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["token_only", "smtp_password", "imap_password"])]
    pub unit_dropin: Option<PathBuf>,
}

/// The drop-in text for `config`: the unit denies every address but loopback
/// (`IPAddressDeny=any`), so each mail server it talks to is listed (systemd.resource-control(5)).
pub fn dropin(config: &crate::config::Config) -> anyhow::Result<String> {
    use crate::config::{SourceConfig, TransportConfig};
    use std::net::ToSocketAddrs;
    let from = config
        .source
        .as_ref()
        .map_or("embedded defaults".into(), |p| p.display().to_string());
    let mut text = format!(
        "# Written by `regmail init --unit-dropin` from {from}; run it again after changing a\n# mail server, then `systemctl daemon-reload && systemctl restart regmail`.\n[Service]\n"
    );
    let mut servers = Vec::new();
    if config.outbound.transport == TransportConfig::Smtp {
        servers.push((
            "smtp",
            &config.smtp.host,
            config.smtp.port,
            &config.smtp.password_file,
        ));
    }
    if config.inbound.source == SourceConfig::Imap {
        servers.push((
            "imap",
            &config.imap.host,
            config.imap.port,
            &config.imap.password_file,
        ));
    }
    for (what, host, port, password) in servers {
        let mut ips: Vec<std::net::IpAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .with_context(|| {
                format!("cannot resolve {what}.host {host:?}; write IPAddressAllow= by hand")
            })?
            .map(|a| a.ip())
            .collect();
        ips.sort();
        ips.dedup();
        text.push_str(&format!("# {what}.host = {host}\n"));
        for ip in ips {
            text.push_str(&format!("IPAddressAllow={ip}\n"));
        }
        if let Some(p) = password {
            text.push_str(&format!("LoadCredential={what}-password:{}\n", p.display()));
        }
    }
    Ok(text)
}

/// Writes `content` to a new file with mode 0600 (refuses to overwrite).
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // The umask may have taken bits away, never added; set exactly 0600 anyway.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

fn read_line(
    what: &str,
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        eprint!("{what}: ");
        let _ = std::io::stderr().flush();
    }
    let line = match lines.next() {
        Some(l) => l?,
        None => bail!("{what}: nothing on standard input (give it as one line)"),
    };
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    if line.trim().is_empty() {
        bail!("{what}: empty; give the password as one line on standard input");
    }
    Ok(line)
}

/// Runs `regmail init`; prints what it created or kept.
pub fn run(a: &InitArgs, config: Option<&Path>, out: &mut impl Write) -> anyhow::Result<()> {
    if let Some(path) = &a.unit_dropin {
        let config = crate::config::Config::load(config)?;
        let text = dropin(&config)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        write!(out, "wrote {}:\n{text}", path.display())?;
        return Ok(());
    }
    let dir = match (&a.dir, config.and_then(Path::parent)) {
        (Some(d), _) => d.clone(),
        (None, Some(p)) if !p.as_os_str().is_empty() => p.to_path_buf(),
        (None, _) => PathBuf::from("/etc/regmail"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let token = dir.join(crate::config::TOKEN_CREDENTIAL);
    if token.exists() {
        writeln!(out, "kept    {} (exists)", token.display())?;
    } else {
        let t = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        write_private(&token, &t)?;
        writeln!(out, "created {} (mode 0600)", token.display())?;
    }
    if a.token_only {
        return Ok(());
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut wanted = vec![(
        "registrar-password",
        "R01 e-mail interface password (set in R01's partner panel)",
    )];
    if a.smtp_password {
        wanted.push(("smtp-password", "SMTP password"));
    }
    if a.imap_password {
        wanted.push(("imap-password", "IMAP password of the callback mailbox"));
    }
    for (name, what) in wanted {
        let path = dir.join(name);
        if path.exists() {
            writeln!(out, "kept    {} (exists)", path.display())?;
            continue;
        }
        let secret = read_line(what, &mut lines)?;
        write_private(&path, &secret)?;
        writeln!(out, "created {} (mode 0600)", path.display())?;
    }
    Ok(())
}
