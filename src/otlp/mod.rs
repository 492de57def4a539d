//! OpenTelemetry's protocol (OTLP): its log records, metric points and spans as events
//! (for the `otlp` source), and events as log records (for the `otlp` sink). The
//! messages and gRPC services are `opentelemetry-proto`'s; this module holds only the
//! mapping, shared by both sides so a round trip keeps what it carried.

pub(crate) mod logs;
pub(crate) mod metrics;
pub(crate) mod scan;
pub(crate) mod traces;
pub(crate) mod value;

/// The event fields the mapping reads and writes.
pub(crate) mod field {
    pub(crate) const MESSAGE: &str = "message";
    pub(crate) const ATTRIBUTES: &str = "attributes";
    pub(crate) const RESOURCES: &str = "resources";
    pub(crate) const SCOPE: &str = "scope";
    pub(crate) const SEVERITY_TEXT: &str = "severity_text";
    pub(crate) const SEVERITY_NUMBER: &str = "severity_number";
    pub(crate) const TIMESTAMP: &str = "timestamp";
    pub(crate) const OBSERVED_TIMESTAMP: &str = "observed_timestamp";
    pub(crate) const TRACE_ID: &str = "trace_id";
    pub(crate) const SPAN_ID: &str = "span_id";
    pub(crate) const FLAGS: &str = "flags";
    pub(crate) const EVENT_NAME: &str = "event_name";
    pub(crate) const DROPPED_ATTRIBUTES_COUNT: &str = "dropped_attributes_count";
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error answer.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    #[prost(string, tag = "2")]
    pub(crate) message: String,
}
