//! Helpers that follow README.md literally: take the commands of a section's first ```sh block
//! from the README text itself (so the text and the test cannot drift apart), run them in a
//! throwaway root with absolute paths moved under it, and simulate what systemd does for
//! `regmail.service` (credentials directory, dynamic user, state directory, UMask) without
//! booting systemd.

#![allow(dead_code)]

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, CliOutput};

/// The repository.
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The uid and gid that stand for the unit's `DynamicUser=yes` (nobody/nogroup).
pub const DYNAMIC_UID: u32 = 65534;

/// README.md's text.
pub fn readme() -> String {
    std::fs::read_to_string(Path::new(REPO).join("README.md")).expect("read README.md")
}

/// The lines of the first ```sh block after the heading that starts with `heading`, with
/// continuation lines (ending in `\`) joined and comment lines dropped.
pub fn sh_block(heading: &str) -> Vec<String> {
    let text = readme();
    let start = text
        .lines()
        .position(|l| l.starts_with('#') && l.trim_start_matches('#').trim().starts_with(heading))
        .unwrap_or_else(|| panic!("README.md has no heading {heading:?}"));
    let lines: Vec<&str> = text.lines().skip(start + 1).collect();
    let open = lines
        .iter()
        .position(|l| l.trim() == "```sh")
        .unwrap_or_else(|| panic!("no ```sh block under {heading:?}"));
    let mut out: Vec<String> = Vec::new();
    let mut pending = String::new();
    for l in &lines[open + 1..] {
        if l.trim() == "```" {
            break;
        }
        let l = l.trim_end();
        if let Some(head) = l.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(l);
        let cmd = std::mem::take(&mut pending);
        if cmd.trim().is_empty() || cmd.trim_start().starts_with('#') {
            continue;
        }
        out.push(cmd);
    }
    assert!(
        !out.is_empty(),
        "the ```sh block under {heading:?} is empty"
    );
    out
}

/// The raw text of the first ```sh block after the heading that starts with `heading` (for a
/// block whose commands span lines, run as one script).
pub fn sh_block_text(heading: &str) -> String {
    let text = readme();
    let start = text
        .lines()
        .position(|l| l.starts_with('#') && l.trim_start_matches('#').trim().starts_with(heading))
        .unwrap_or_else(|| panic!("README.md has no heading {heading:?}"));
    let mut out = String::new();
    let mut inside = false;
    for l in text.lines().skip(start + 1) {
        if !inside {
            inside = l.trim() == "```sh";
            continue;
        }
        if l.trim() == "```" {
            return out;
        }
        out.push_str(l);
        out.push('\n');
    }
    panic!("no closed ```sh block under {heading:?}");
}

/// Moves the absolute system paths of a command or file under `root`.
pub fn rooted(text: &str, root: &Path) -> String {
    let r = root.display().to_string();
    let mut out = text.to_owned();
    for p in [
        "/etc/regmail",
        "/etc/systemd",
        "/usr/share/doc/regmail",
        "/usr/share/regmail",
        "/usr/bin/regmail",
        "/var/lib/regmail",
        "/lib/systemd/system",
    ] {
        // Only where the path starts a word (after a space, a quote, '=' or ':').
        for lead in [" ", "\"", "=", ":", "'"] {
            out = out.replace(&format!("{lead}{p}"), &format!("{lead}{r}{p}"));
        }
        if out.starts_with(p) {
            out = format!("{r}{out}");
        }
    }
    out
}

/// A throwaway root with stub `sudo`, `sudoedit`, `cargo`, `systemctl` on PATH.
pub struct Root {
    /// The root directory (traversable by the unit's user, as / is).
    pub dir: tempfile::TempDir,
    /// The stubs.
    pub stubs: PathBuf,
    /// The daemon started for the unit, if any.
    pub unit: Option<Child>,
}

impl Root {
    /// Makes the root and the stubs. `sudoedit` runs `edit` (a sed script) on the file.
    pub fn new(edit: &str) -> Root {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod root");
        let stubs = dir.path().join(".stubs");
        std::fs::create_dir_all(&stubs).expect("stubs");
        let stub = |name: &str, body: &str| {
            let p = stubs.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("stub");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        };
        // We are root already; sudo only runs the command.
        stub("sudo", "exec \"$@\"");
        // The binary under test is built already (cargo test built it).
        stub("cargo", "exit 0");
        // The operator's edit of the configuration.
        std::fs::write(stubs.join("edit.sed"), edit).expect("edit.sed");
        stub(
            "sudoedit",
            &format!("exec sed -i -f {} \"$1\"", stubs.join("edit.sed").display()),
        );
        // Only daemon-reload is a plain no-op; starting the unit is simulated by the test.
        stub(
            "systemctl",
            "[ \"$1\" = daemon-reload ] && exit 0; echo \"systemctl stub: $*\" >&2; exit 3",
        );
        Root {
            dir,
            stubs,
            unit: None,
        }
    }

    /// The root's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs one README command (paths moved under the root) with `stdin`.
    pub fn run(&self, line: &str, stdin: &str) -> CliOutput {
        let cmd = rooted(line, self.path());
        // Never touch the real system: a command that would write outside the root is refused.
        assert!(
            !(cmd.contains("regmail init") || cmd.contains(" init "))
                || cmd.contains("--config ")
                || cmd.contains("--dir "),
            "{line}: `regmail init` without --config or --dir would write to the real /etc/regmail"
        );
        for sys in [" /etc/", " /usr/", " /lib/", " /var/"] {
            assert!(
                !cmd.contains(sys),
                "{line}: a system path was not moved under the root: {cmd}"
            );
        }
        let path = format!(
            "{}:{}:{}",
            self.stubs.display(),
            self.path().join("usr/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(&cmd)
            .current_dir(REPO)
            .env("PATH", path)
            .env("DESTDIR", self.path())
            .env("REGMAIL_BIN", common::BIN)
            .env_remove("REGMAIL_API_TOKEN")
            .env_remove("REGMAIL_CONFIG")
            .env_remove("REGMAIL_API")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run bash");
        {
            use std::io::Write;
            let mut i = child.stdin.take().expect("stdin");
            let _ = i.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output().expect("wait");
        CliOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The unit's settings: the installed unit file, then its drop-ins in name order
    /// (systemd.unit(5)); repeated keys accumulate.
    pub fn unit_settings(&self) -> HashMap<String, Vec<String>> {
        let mut files = vec![self.path().join("lib/systemd/system/regmail.service")];
        let dropins = self.path().join("etc/systemd/system/regmail.service.d");
        if let Ok(rd) = std::fs::read_dir(&dropins) {
            let mut d: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect();
            d.sort();
            files.extend(d);
        }
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for f in files {
            let text =
                std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
            for l in text.lines() {
                let l = l.trim();
                if l.starts_with('#') || l.starts_with('[') || l.is_empty() {
                    continue;
                }
                if let Some((k, v)) = l.split_once('=') {
                    out.entry(k.trim().to_owned())
                        .or_default()
                        .push(v.trim().to_owned());
                }
            }
        }
        out
    }

    /// What systemd does for `systemctl start regmail`, as far as a test can: copies each
    /// `LoadCredential=` file into a credentials directory owned by the dynamic user (0400,
    /// refusing to start when one is missing, as systemd does), creates the StateDirectory
    /// (0700, the user's), and runs ExecStart as that user with `CREDENTIALS_DIRECTORY`,
    /// `WorkingDirectory` and `UMask`.
    pub fn start_unit(&mut self) -> Result<(), String> {
        let s = self.unit_settings();
        let one = |k: &str| s.get(k).and_then(|v| v.last()).cloned();
        assert_eq!(
            one("DynamicUser").as_deref(),
            Some("yes"),
            "the unit's user"
        );
        let creds = self.path().join("run/credentials/regmail.service");
        std::fs::create_dir_all(&creds).map_err(|e| e.to_string())?;
        for lc in s.get("LoadCredential").cloned().unwrap_or_default() {
            let (name, src) = lc
                .split_once(':')
                .ok_or_else(|| format!("LoadCredential={lc}: no NAME:PATH"))?;
            let src = PathBuf::from(rooted(&format!(" {src}"), self.path()).trim_start());
            let data = std::fs::read(&src).map_err(|e| {
                format!(
                    "Failed to set up credentials: LoadCredential={lc}: {} ({e})",
                    src.display()
                )
            })?;
            let dst = creds.join(name);
            std::fs::write(&dst, data).map_err(|e| e.to_string())?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o400))
                .map_err(|e| e.to_string())?;
            std::os::unix::fs::chown(&dst, Some(DYNAMIC_UID), Some(DYNAMIC_UID))
                .map_err(|e| e.to_string())?;
        }
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o500))
            .map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(&creds, Some(DYNAMIC_UID), Some(DYNAMIC_UID))
            .map_err(|e| e.to_string())?;
        let state = self
            .path()
            .join("var/lib")
            .join(one("StateDirectory").ok_or("no StateDirectory")?);
        std::fs::create_dir_all(&state).map_err(|e| e.to_string())?;
        let mode = u32::from_str_radix(&one("StateDirectoryMode").unwrap_or("0755".into()), 8)
            .map_err(|e| e.to_string())?;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(&state, Some(DYNAMIC_UID), Some(DYNAMIC_UID))
            .map_err(|e| e.to_string())?;
        let exec = rooted(
            &format!(" {}", one("ExecStart").ok_or("no ExecStart")?),
            self.path(),
        );
        let workdir = rooted(
            &format!(" {}", one("WorkingDirectory").unwrap_or("/".into())),
            self.path(),
        );
        let umask = one("UMask").unwrap_or("0022".into());
        let log = std::fs::File::create(self.path().join("unit.log")).map_err(|e| e.to_string())?;
        let child = Command::new("setpriv")
            .args([
                &format!("--reuid={DYNAMIC_UID}"),
                &format!("--regid={DYNAMIC_UID}"),
                "--clear-groups",
                "--",
                "sh",
                "-c",
                &format!("umask {umask}; cd{workdir} && exec{exec}"),
            ])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("CREDENTIALS_DIRECTORY", &creds)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("setpriv: {e}"))?;
        self.unit = Some(child);
        Ok(())
    }

    /// The unit's log so far.
    pub fn unit_log(&self) -> String {
        std::fs::read_to_string(self.path().join("unit.log")).unwrap_or_default()
    }

    /// Waits for `GET /healthz` on `base` while the unit runs.
    pub fn wait_healthy(&mut self, base: &str) {
        let agent = common::agent(Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(c) = self.unit.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("the unit's daemon exited ({st}):\n{}", self.unit_log());
            }
            if agent
                .get(&format!("{base}/healthz"))
                .call()
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no /healthz within 15 s:\n{}",
                self.unit_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The uid a running process has.
    pub fn unit_uid(&mut self) -> Option<u32> {
        let pid = self.unit.as_ref()?.id();
        std::fs::metadata(format!("/proc/{pid}"))
            .ok()
            .map(|m| m.uid())
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        if let Some(mut c) = self.unit.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Mode bits of a file.
pub fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}
