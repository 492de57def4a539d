//! What differs between OTLP's three export requests: their events, where the events
//! go, and how a partial success is written back.

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use vrl::value::Value;

use crate::otlp;

/// Index of the `metrics` output in the source's `outputs()`.
pub(super) const METRICS_OUTPUT: usize = 0;
/// Index of the `traces` output.
pub(super) const TRACES_OUTPUT: usize = 1;
/// No named output: the default one (log records).
pub(super) const LOGS_OUTPUT: usize = usize::MAX;

/// One kind of export request.
pub(super) trait Signal:
    prost::Message + Default + serde::de::DeserializeOwned + Send + 'static
{
    type Response: prost::Message + serde::Serialize + Default + Send + 'static;
    /// What its items are called in answers ("log records").
    const ITEMS: &'static str;
    /// The output its events go to.
    const OUTPUT: usize;
    fn items(&self) -> usize;
    /// What the request's protobuf bytes will cost as events, before decoding them.
    fn scan(bytes: &[u8]) -> Result<otlp::scan::Cost, String>;
    fn into_events(self) -> Vec<Value>;
    /// The answer: `rejected` items refused, with why.
    fn response(rejected: i64, message: String) -> Self::Response;
}

impl Signal for ExportLogsServiceRequest {
    type Response = ExportLogsServiceResponse;
    const ITEMS: &'static str = "log records";
    const OUTPUT: usize = LOGS_OUTPUT;
    fn items(&self) -> usize {
        otlp::logs::count(self)
    }
    fn scan(bytes: &[u8]) -> Result<otlp::scan::Cost, String> {
        otlp::scan::logs_or_traces(bytes)
    }
    fn into_events(self) -> Vec<Value> {
        otlp::logs::to_events(self)
    }
    fn response(rejected: i64, message: String) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (rejected > 0 || !message.is_empty()).then_some(
                ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: message,
                },
            ),
        }
    }
}

impl Signal for ExportMetricsServiceRequest {
    type Response = ExportMetricsServiceResponse;
    const ITEMS: &'static str = "data points";
    const OUTPUT: usize = METRICS_OUTPUT;
    fn items(&self) -> usize {
        otlp::metrics::count(self)
    }
    fn scan(bytes: &[u8]) -> Result<otlp::scan::Cost, String> {
        otlp::scan::metrics(bytes)
    }
    fn into_events(self) -> Vec<Value> {
        otlp::metrics::to_events(self)
    }
    fn response(rejected: i64, message: String) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (rejected > 0 || !message.is_empty()).then_some(
                ExportMetricsPartialSuccess {
                    rejected_data_points: rejected,
                    error_message: message,
                },
            ),
        }
    }
}

impl Signal for ExportTraceServiceRequest {
    type Response = ExportTraceServiceResponse;
    const ITEMS: &'static str = "spans";
    const OUTPUT: usize = TRACES_OUTPUT;
    fn items(&self) -> usize {
        otlp::traces::count(self)
    }
    fn scan(bytes: &[u8]) -> Result<otlp::scan::Cost, String> {
        otlp::scan::logs_or_traces(bytes)
    }
    fn into_events(self) -> Vec<Value> {
        otlp::traces::to_events(self)
    }
    fn response(rejected: i64, message: String) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (rejected > 0 || !message.is_empty()).then_some(
                ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message,
                },
            ),
        }
    }
}
