//! What one reload does (the triggers are the application controller's, [`crate::app`]).
//!
//! A reload loads and validates the files completely before the topology is touched;
//! a bad file or a component that fails to build leaves the running pipeline as it was.

use std::path::PathBuf;
use std::time::Instant;

use crate::config::{ConfigErrors, Pipeline};
use crate::telemetry::Telemetry;
use crate::topology::{Changes, Topology};

/// Loads the pipeline files (or the embedded default pipeline when there are none).
pub(crate) fn load_pipeline(files: &[PathBuf]) -> Result<Pipeline, ConfigErrors> {
    if files.is_empty() {
        crate::config::load_texts(
            &[(
                PathBuf::from(crate::config::DEFAULT_PIPELINE_NAME),
                crate::config::DEFAULT_PIPELINE.to_owned(),
            )],
            crate::config::lookup_env,
        )
    } else {
        crate::config::load_files(files)
    }
}

/// Reloads `files` into `topology`; on failure the running pipeline is unchanged and
/// the error is logged, counted and kept for `/health`.
pub(crate) async fn reload(
    topology: &mut Topology,
    telemetry: &Telemetry,
    files: &[PathBuf],
    trigger: &str,
) -> Result<Changes, String> {
    let started = Instant::now();
    let pipeline = match load_pipeline(files) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(trigger, "reload refused: {e}");
            }
            telemetry.reload_failed(errors.to_string());
            return Err(errors.to_string());
        }
    };
    for w in &pipeline.warnings {
        tracing::warn!("{w}");
    }
    let hash = pipeline.hash;
    let wiring = pipeline.wiring();
    match topology.apply(pipeline).await {
        Ok(changes) => {
            let took = started.elapsed();
            telemetry.config_applied(hash, Some(took));
            telemetry.set_inputs(wiring);
            tracing::info!(
                trigger,
                added = ?changes.added,
                changed = ?changes.changed,
                removed = ?changes.removed,
                aborted = ?changes.aborted,
                took = ?took,
                "pipeline reloaded"
            );
            Ok(changes)
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(trigger, "reload rolled back: {e}");
            }
            telemetry.reload_failed(errors.to_string());
            Err(errors.to_string())
        }
    }
}
