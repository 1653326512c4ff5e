//! `regmail sandbox`: a registrar simulator (issue 6). Placeholder until it lands.

use std::path::Path;

/// Runs the sandbox with the configuration file at `config`.
pub fn main(config: &Path) -> anyhow::Result<()> {
    anyhow::bail!("the sandbox is not built yet (config {})", config.display())
}
