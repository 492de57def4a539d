//! `api`: events posted to the API (`POST /events`, `POST /metrics`) enter the pipeline
//! here, with the same acknowledgements as webhooks: the request is answered once its
//! events were delivered (200), or when their delivery outlasts `request_timeout`
//! (202: they are in the pipeline), or with 503 when the pipeline stays full or a sink
//! failed them.
//!
//! The source only takes events in; checking what a request holds is the API's job
//! ([`crate::api`]). Each running instance is listed by id in [`INTAKES`], where the
//! API finds it; during a reload the old and the new instance share one entry.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::component::{BoxFuture, BuildError, ComponentTask, Live, SourceConfig, SourceContext};
pub(crate) use crate::sources::util::handover::{Handed, Intake};

/// Takes events posted to the API (`POST /events` and `POST /metrics`, operator role)
/// into the pipeline. With several `api` sources, a request names one in `?source=`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiSourceConfig {
    /// How long a request may wait for room in the pipeline and for its events to be
    /// delivered: after it, a request whose events entered the pipeline is answered 202,
    /// one whose events could not enter it 503 (default 10s).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub(crate) request_timeout: Duration,
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The running `api` sources, by component id.
pub(crate) static INTAKES: Live<Intake> = Live::new();

impl SourceConfig for ApiSourceConfig {
    fn type_name(&self) -> &'static str {
        "api"
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.request_timeout.is_zero() {
            return Err(BuildError(
                "`request_timeout` must be longer than 0s".into(),
            ));
        }
        Ok(())
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            self.check()?;
            let request_timeout = self.request_timeout;
            Ok(Box::pin(run(request_timeout, cx)) as ComponentTask)
        })
    }
}

async fn run(
    request_timeout: Duration,
    cx: SourceContext,
) -> Result<(), crate::component::ComponentError> {
    let SourceContext {
        id,
        out,
        shutdown,
        metrics,
        telemetry,
        ..
    } = cx;
    let latency = Arc::clone(telemetry.latency());
    let intake = Arc::new(Intake::new(id, out, metrics, latency, request_timeout));
    INTAKES.add(&id, &intake);
    shutdown.cancelled().await;
    INTAKES.remove(&id, &intake);
    intake.close().await;
    Ok(())
}
