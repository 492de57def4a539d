//! What this binary is: version, git commit, target and build date (from the build
//! script, `src/build.rs`).

/// The crate version.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit it was built from (12 hex digits), or `unknown`.
pub(crate) const COMMIT: &str = env!("SLUICE_GIT_COMMIT");
/// The target triple.
pub(crate) const TARGET: &str = env!("SLUICE_TARGET");
/// The build date, `YYYY-MM-DD` (UTC).
pub(crate) const DATE: &str = env!("SLUICE_BUILD_DATE");
/// `--version`: `0.1.0 (commit 0123456789ab, x86_64-unknown-linux-gnu, built 2026-12-05)`.
pub(crate) const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SLUICE_GIT_COMMIT"),
    ", ",
    env!("SLUICE_TARGET"),
    ", built ",
    env!("SLUICE_BUILD_DATE"),
    ")"
);
