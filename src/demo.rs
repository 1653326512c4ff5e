//! `regmail demo`: regmail and the sandbox together on embedded defaults (issue 6).

use std::path::Path;

/// Runs the demo under `dir`.
pub fn main(dir: &Path) -> anyhow::Result<()> {
    anyhow::bail!("the demo is not built yet ({})", dir.display())
}
