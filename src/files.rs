//! Process-wide file hygiene: every file regmail writes is private to its user whatever the
//! umask it was started with (rule 4: 0600 files, 0700 directories), and the descriptor limit
//! is raised to what the system allows so the API's connection cap has room below it.

use std::path::Path;

/// Sets the process umask to 077 (files 0600, directories 0700 from now on) and returns the
/// previous one. Called first thing in `main`, before any file is created.
pub fn private_umask() -> u32 {
    // SAFETY: umask(2) only swaps the process's file mode creation mask; it cannot fail.
    let old = unsafe { libc::umask(0o077) };
    old as u32
}

/// Makes `path` private: 0700 for directories, 0600 for files, recursively. For trees
/// created before the umask was set (an older version, a copy by hand). A missing path is fine.
pub fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.is_dir() {
        if meta.permissions().mode() & 0o777 != 0o700 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        }
        for entry in std::fs::read_dir(path)? {
            make_private(&entry?.path())?;
        }
    } else if meta.permissions().mode() & 0o077 != 0 {
        let mode = meta.permissions().mode() & 0o700;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o600))?;
    }
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (systemd's default soft limit is 1024,
/// its hard limit 524288; setrlimit(2)). Returns the soft limit in force afterwards.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to and read from the struct we pass, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn make_private_fixes_a_world_readable_tree() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("f"), "x").unwrap();
        std::fs::set_permissions(sub.join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_private(&d.path().join("a")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&sub.join("f")), 0o600);
        assert_eq!(mode(&d.path().join("a")), 0o700);
    }
}
