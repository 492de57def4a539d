//! The `error_type` and `stage` labels of `sluice_component_errors_total`: a closed set,
//! so an alert written against them keeps matching, and counted in plain atomics.
//! Names follow Vector's conventions where one exists.

use std::sync::atomic::{AtomicU64, Ordering};

/// What went wrong (each type's meaning is in [`ErrorType::all`], which the metrics
/// reference page shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorType {
    Parse,
    Request,
    Reader,
    Script,
    Encoder,
    Writer,
    Delivery,
    Acknowledgment,
}

/// Where in the component it went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Receiving,
    Processing,
    Sending,
}

const TYPES: [ErrorType; 8] = [
    ErrorType::Parse,
    ErrorType::Request,
    ErrorType::Reader,
    ErrorType::Script,
    ErrorType::Encoder,
    ErrorType::Writer,
    ErrorType::Delivery,
    ErrorType::Acknowledgment,
];
const STAGES: [Stage; 3] = [Stage::Receiving, Stage::Processing, Stage::Sending];

impl ErrorType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Parse => "parse_failed",
            Self::Request => "request_failed",
            Self::Reader => "reader_failed",
            Self::Script => "script_failed",
            Self::Encoder => "encoder_failed",
            Self::Writer => "writer_failed",
            Self::Delivery => "delivery_failed",
            Self::Acknowledgment => "acknowledgment_failed",
        }
    }
    /// Every type with what it means, for the metrics reference page.
    pub(crate) fn all() -> impl Iterator<Item = (&'static str, &'static str)> {
        TYPES.iter().map(|t| {
            let meaning = match t {
                Self::Parse => {
                    "bytes that are not what the format says (a body, a line, a record, a feed)"
                }
                Self::Request => {
                    "a request refused as a whole (authentication, size, protocol, decoder)"
                }
                Self::Reader => "reading failed (a file, a stream, a query, a poll)",
                Self::Script => "a VRL program failed on an event",
                Self::Encoder => "an event could not be encoded for its destination",
                Self::Writer => "a local write failed (a file, the console, a disk buffer)",
                Self::Delivery => "a sink gave up on events after its retries",
                Self::Acknowledgment => {
                    "a position could not be committed (Kafka offsets, file checkpoints)"
                }
            };
            (t.as_str(), meaning)
        })
    }
}

impl Stage {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Receiving => "receiving",
            Self::Processing => "processing",
            Self::Sending => "sending",
        }
    }
}

/// One counter per (type, stage).
#[derive(Debug, Default)]
pub(super) struct ErrorCounts([AtomicU64; TYPES.len() * STAGES.len()]);

fn slot(error_type: ErrorType, stage: Stage) -> usize {
    error_type as usize * STAGES.len() + stage as usize
}

impl ErrorCounts {
    pub(super) fn add(&self, error_type: ErrorType, stage: Stage, n: u64) {
        self.0[slot(error_type, stage)].fetch_add(n, Ordering::Relaxed);
    }

    /// The (type, stage) pairs counted at least once.
    pub(super) fn nonzero(&self) -> Vec<(ErrorType, Stage, u64)> {
        let mut out = Vec::new();
        for t in TYPES {
            for s in STAGES {
                let n = self.0[slot(t, s)].load(Ordering::Relaxed);
                if n > 0 {
                    out.push((t, s, n));
                }
            }
        }
        out
    }
}
