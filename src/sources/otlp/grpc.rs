//! OTLP/gRPC: the `Export` methods of the logs, metrics and trace services (tonic's
//! generated servers), routed beside the HTTP paths. A guard in front of them checks
//! the credentials and takes a decoding turn before tonic reads the message; the turn
//! is given back once the message is events.

use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::sync::OwnedSemaphorePermit;
use tonic::codec::CompressionEncoding;

use super::signal::Signal;
use super::{Outcome, Receiver};
use crate::telemetry::{ErrorType, Stage};

/// The decoding turn a request holds, handed from the guard to the method.
#[derive(Clone)]
struct Turn(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

#[derive(Clone)]
struct Otlp(Arc<Receiver>);

pub(super) fn routes(receiver: &Arc<Receiver>) -> axum::Router {
    let most = receiver.config.max_body_bytes;
    let service = Otlp(Arc::clone(receiver));
    let logs = LogsServiceServer::new(service.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(most);
    let metrics = MetricsServiceServer::new(service.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(most);
    let traces = TraceServiceServer::new(service)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(most);
    let guard_state = Arc::clone(receiver);
    axum::Router::new()
        .route_service(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            logs,
        )
        .route_service(
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            metrics,
        )
        .route_service(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            traces,
        )
        .layer(axum::middleware::from_fn(move |request, next| {
            guard(Arc::clone(&guard_state), request, next)
        }))
}

/// Credentials and a decoding turn before tonic reads the message.
async fn guard(receiver: Arc<Receiver>, request: Request, next: Next) -> Response {
    let config = &receiver.config;
    if config
        .auth
        .as_ref()
        .is_some_and(|a| !a.admits(request.headers()))
    {
        receiver
            .intake
            .metrics
            .add_errors(1, ErrorType::Request, Stage::Receiving);
        return status_response(tonic::Status::unauthenticated("authentication required"));
    }
    let turn = Arc::clone(&receiver.decoding).acquire_owned();
    let Ok(Ok(turn)) = tokio::time::timeout(config.request_timeout, turn).await else {
        return status_response(tonic::Status::unavailable(
            "too many requests in flight (max_concurrent_requests): send again later",
        ));
    };
    // The message is read here, within `read_timeout` and `max_body_bytes`, and scanned
    // before tonic decodes it: a stalled stream cannot hold a turn for longer, and a
    // small message cannot stand for more events than the limits allow.
    let (parts, body) = request.into_parts();
    let most = config.max_body_bytes;
    let read = axum::body::to_bytes(body, most.saturating_add(5));
    let bytes = match tokio::time::timeout(config.read_timeout, read).await {
        Err(_) => {
            return status_response(tonic::Status::deadline_exceeded(
                "the message took longer than read_timeout",
            ));
        }
        Ok(Err(_)) => {
            return status_response(tonic::Status::invalid_argument(format!(
                "the message is larger than max_body_bytes ({most})"
            )));
        }
        Ok(Ok(bytes)) => bytes,
    };
    let gzip = parts
        .headers
        .get("grpc-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    if let Err(refusal) = check_message(&receiver, parts.uri.path(), &bytes, gzip) {
        receiver
            .intake
            .metrics
            .add_errors(1, ErrorType::Request, Stage::Receiving);
        return status_response(tonic::Status::invalid_argument(refusal));
    }
    let mut request = Request::from_parts(parts, axum::body::Body::from(bytes));
    request
        .extensions_mut()
        .insert(Turn(Arc::new(Mutex::new(Some(turn)))));
    next.run(request).await
}

/// One gRPC message (a flag byte, a 4-byte length, the message, maybe gzipped) within
/// the limits, scanned as the request of `path`.
fn check_message(receiver: &Receiver, path: &str, bytes: &[u8], gzip: bool) -> Result<(), String> {
    let most = receiver.config.max_body_bytes;
    let Some((&flag, rest)) = bytes.split_first() else {
        return Err("the request has no message".into());
    };
    let (len, message) = rest
        .split_first_chunk::<4>()
        .map(|(len, m)| (u32::from_be_bytes(*len) as usize, m))
        .ok_or("the message is truncated")?;
    if len != message.len() {
        return Err("the request must carry exactly one message".into());
    }
    let plain;
    let message = match (flag, gzip) {
        (0, _) => message,
        (1, true) => {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(message)
                .take(most as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("the gzip message is corrupt: {e}"))?;
            if out.len() > most {
                return Err(format!(
                    "the message is larger than max_body_bytes ({most}) once decompressed"
                ));
            }
            plain = out;
            &plain[..]
        }
        _ => return Err("a compressed message needs grpc-encoding: gzip".into()),
    };
    let (cost, items) = if path.contains(".metrics.") {
        (crate::otlp::scan::metrics(message), "data points")
    } else if path.contains(".trace.") {
        (crate::otlp::scan::logs_or_traces(message), "spans")
    } else {
        (crate::otlp::scan::logs_or_traces(message), "log records")
    };
    let cost = cost.map_err(|e| format!("the message is not an OTLP export request: {e}"))?;
    super::admit(&receiver.config, cost, items)
}

fn status_response(status: tonic::Status) -> Response {
    status.into_http::<axum::body::Body>().into_response()
}

impl Otlp {
    async fn export<R: Signal>(
        &self,
        request: tonic::Request<R>,
    ) -> Result<tonic::Response<R::Response>, tonic::Status> {
        let turn = request.extensions().get::<Turn>().cloned();
        let outcome = match self.0.events(request.into_inner()).await {
            Ok(events) => {
                // The events are in memory the pipeline's budget accounts for from here.
                if let Some(Turn(turn)) = turn
                    && let Ok(mut held) = turn.lock()
                {
                    held.take();
                }
                self.0.deliver::<R>(events).await
            }
            Err(outcome) => outcome,
        };
        match outcome {
            Outcome::Accepted(response) => Ok(tonic::Response::new(response)),
            Outcome::Unavailable(m) => Err(tonic::Status::unavailable(m)),
            Outcome::Refused(m) | Outcome::TooLarge(m) => Err(tonic::Status::invalid_argument(m)),
        }
    }
}

#[tonic::async_trait]
impl LogsService for Otlp {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        Otlp::export(self, request).await
    }
}

#[tonic::async_trait]
impl MetricsService for Otlp {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        Otlp::export(self, request).await
    }
}

#[tonic::async_trait]
impl TraceService for Otlp {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Otlp::export(self, request).await
    }
}
