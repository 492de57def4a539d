//! The units options are written in, shared by every layer: durations (`30s`, and
//! Prometheus's `1h30m`) and byte sizes (`256MiB`), with the JSON Schema the reference pages show for them.

mod byte_size;
mod duration;
mod prometheus_duration;

pub(crate) use byte_size::ByteSize;
pub(crate) use duration::{DURATION_PATTERN, duration, millis};
pub(crate) use prometheus_duration::prometheus_duration;

/// The serde default of an option that is on unless turned off.
pub(crate) fn yes() -> bool {
    true
}
