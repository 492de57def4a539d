//! Start-up: what a previous run left on disk. Every segment is read once, so the
//! buffer knows which records are still to deliver and which id comes next, before a
//! fresh active segment is started after the old ones (old segments are never appended
//! to: a torn tail must stay at the end of a finished segment, where readers skip it).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use super::ledger::read_ledger;
use super::segment::{self, SegmentReader, Step};
use super::writer::create_segment;
use super::{OpenError, SegmentMeta, io_err};

/// The buffer's state as found on disk, with the new active segment open.
pub(super) struct Recovered {
    /// The ledger's prefix: every id below it was settled before this run.
    pub(super) acked_below: u64,
    pub(super) segments: BTreeMap<u64, SegmentMeta>,
    pub(super) next_id: u64,
    pub(super) first_unacked: Option<u64>,
    /// Records (and their payload bytes) still to deliver.
    pub(super) events: u64,
    pub(super) bytes: u64,
    /// The new active segment and its file.
    pub(super) active: u64,
    pub(super) file: File,
    /// Where the reader starts.
    pub(super) first_seq: u64,
}

/// Reads the ledger and every segment in `dir`; damage is noted, never fatal.
pub(super) fn recover(dir: &Path, id: &str) -> Result<Recovered, OpenError> {
    let acked_below = read_ledger(dir);
    let seqs = segment::list(dir).map_err(io_err(dir))?;
    let mut segments = BTreeMap::new();
    let (mut max_id, mut first_unacked) = (None::<u64>, None::<u64>);
    let (mut events, mut bytes) = (0u64, 0u64);
    for &seq in &seqs {
        let path = segment::path(dir, seq);
        let mut reader = SegmentReader::open(&path).map_err(io_err(&path))?;
        let mut meta = SegmentMeta {
            last_id: None,
            sealed: true,
            damaged: false,
        };
        let mut at = 0;
        loop {
            match reader.step(at, u64::MAX).map_err(io_err(&path))? {
                Step::Record { id, payload, end } => {
                    at = end;
                    meta.last_id = Some(meta.last_id.map_or(id, |l| l.max(id)));
                    max_id = Some(max_id.map_or(id, |m| m.max(id)));
                    if id >= acked_below {
                        first_unacked = Some(first_unacked.map_or(id, |f| f.min(id)));
                        events += 1;
                        bytes += payload.len() as u64;
                    }
                }
                Step::Damaged { resume } => {
                    meta.damaged = true;
                    match resume {
                        Some(next) => at = next,
                        None => break,
                    }
                }
                Step::End => break,
            }
        }
        segments.insert(seq, meta);
    }
    let next_id = max_id.map_or(acked_below, |m| (m + 1).max(acked_below));
    let active = seqs.last().map_or(1, |s| s + 1);
    let active_path = segment::path(dir, active);
    let file = create_segment(&active_path).map_err(io_err(&active_path))?;
    segments.insert(
        active,
        SegmentMeta {
            last_id: None,
            sealed: false,
            damaged: false,
        },
    );
    let first_seq = seqs.first().copied().unwrap_or(active);
    if events > 0 {
        tracing::info!(component_id = %id, events, bytes, segments = seqs.len(), "disk buffer: replaying undelivered events");
    }
    Ok(Recovered {
        acked_below,
        segments,
        next_id,
        first_unacked,
        events,
        bytes,
        active,
        file,
        first_seq,
    })
}
