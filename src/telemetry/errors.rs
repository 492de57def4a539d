//! The `error_type` and `stage` labels of `sluice_component_errors_total`: a closed set,
//! so an alert written against them keeps matching, and counted in plain atomics.
//! Names follow Vector's conventions where one exists.

use std::sync::atomic::{AtomicU64, Ordering};

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorType {
    /// Bytes that are not what the format says (a body, a line, a record, a feed).
    Parse,
    /// A request refused as a whole: authentication, size, protocol, decoding plugin.
    Request,
    /// Reading from the outside failed (a file, a stream, a query, a poll).
    Reader,
    /// A VRL program failed on an event.
    Script,
    /// An event could not be turned into what a sink sends.
    Encoder,
    /// Writing locally failed (a file, the console, a disk buffer).
    Writer,
    /// A sink gave up on events after its retries.
    Delivery,
    /// A position could not be committed or acknowledged (Kafka offsets, file
    /// checkpoints).
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
