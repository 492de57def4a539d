//! The id of the component that made an event, as each event carries it.
//!
//! Every event names its source. A reference-counted string would cost two atomic
//! operations per event, on a counter that every event of a source shares: events are
//! made on one thread and dropped on another, so that counter's cache line would move
//! between the cores for each event. Ids are interned instead: each distinct id is
//! stored once for the life of the process and events copy a plain reference to it.
//!
//! What that keeps is bounded by the number of distinct component ids the process sees:
//! the pipeline file's, those a reload or the API adds, and those read back from a
//! disk buffer. Ids are short names, so that is a few bytes each. But a disk buffer's
//! file is data, not configuration, so a damaged one could name any number of ids, and
//! nothing limits an id's length: past [`MAX_IDS`] distinct ids or [`MAX_ID_BYTES`] of
//! them (far more than any pipeline declares, even over thousands of reloads), a new id
//! is no longer kept and reads as [`UNKNOWN`], with one warning.

use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{Mutex, OnceLock};

/// How many distinct ids are kept for the life of the process.
const MAX_IDS: usize = 65_536;

/// How many bytes of ids are kept for the life of the process.
const MAX_ID_BYTES: usize = 4 << 20;

/// What a new id reads as once either bound is reached.
const UNKNOWN: &str = "(unknown)";

/// The interned id of the component that made an event. Copying it costs nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId(&'static str);

impl SourceId {
    /// The id `name`, stored on first use. Takes a lock: call it when a component is
    /// built, not per event.
    pub fn intern(name: &str) -> Self {
        static IDS: OnceLock<Mutex<Ids>> = OnceLock::new();
        IDS.get_or_init(|| Mutex::new(Ids::new(MAX_IDS, MAX_ID_BYTES)))
            .lock()
            // The set is only ever inserted into, so a panic elsewhere cannot have left
            // it half-changed.
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .intern(name)
    }

    /// [`SourceId::intern`] for a caller that meets the same id again and again (a
    /// disk buffer reading back events, all of one source as a rule): the last id
    /// this thread asked for is answered without the lock.
    pub(crate) fn intern_again(name: &str) -> Self {
        thread_local! {
            static LAST: std::cell::Cell<Option<SourceId>> = const { std::cell::Cell::new(None) };
        }
        LAST.with(|last| match last.get() {
            Some(id) if id.0 == name => id,
            _ => {
                let id = Self::intern(name);
                last.set(Some(id));
                id
            }
        })
    }

    /// The id's text.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

/// The kept ids, up to a bound on their number and on their bytes.
struct Ids {
    kept: HashSet<&'static str>,
    bytes: usize,
    max: usize,
    max_bytes: usize,
    warned: bool,
}

impl Ids {
    fn new(max: usize, max_bytes: usize) -> Self {
        Self {
            kept: HashSet::new(),
            bytes: 0,
            max,
            max_bytes,
            warned: false,
        }
    }

    fn intern(&mut self, name: &str) -> SourceId {
        if let Some(&known) = self.kept.get(name) {
            return SourceId(known);
        }
        if self.kept.len() >= self.max || self.bytes + name.len() > self.max_bytes {
            if !std::mem::replace(&mut self.warned, true) {
                tracing::warn!(
                    ids = self.kept.len(),
                    bytes = self.bytes,
                    "too many distinct component ids kept: events of further ones carry the id {UNKNOWN}"
                );
            }
            return SourceId(UNKNOWN);
        }
        let kept: &'static str = Box::leak(name.into());
        self.bytes += kept.len();
        self.kept.insert(kept);
        SourceId(kept)
    }
}

impl Deref for SourceId {
    type Target = str;

    fn deref(&self) -> &str {
        self.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::{Ids, SourceId, UNKNOWN};

    #[test]
    fn the_same_name_is_stored_once() {
        let a = SourceId::intern("hooks_source_id_test");
        let b = SourceId::intern(&String::from("hooks_source_id_test"));
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_ne!(a, SourceId::intern("other_source_id_test"));
        assert_eq!(a.to_string(), "hooks_source_id_test");
        assert_eq!(format!("{a:?}"), "\"hooks_source_id_test\"");
        // The same set answers whether the last id is remembered or not.
        assert_eq!(SourceId::intern_again("hooks_source_id_test"), a);
        assert_eq!(SourceId::intern_again("hooks_source_id_test"), a);
        assert_eq!(
            SourceId::intern_again("other_source_id_test"),
            SourceId::intern("other_source_id_test")
        );
    }

    #[test]
    fn past_the_bound_ids_are_not_kept() {
        let mut ids = Ids::new(2, 1000);
        let a = ids.intern("bound_a");
        let b = ids.intern("bound_b");
        assert_eq!((a.as_str(), b.as_str()), ("bound_a", "bound_b"));
        assert_eq!(ids.intern("bound_c").as_str(), UNKNOWN);
        assert_eq!(ids.intern("bound_d").as_str(), UNKNOWN);
        // Ids kept before the bound still read as themselves.
        assert!(std::ptr::eq(ids.intern("bound_a").as_str(), a.as_str()));
        assert_eq!(ids.kept.len(), 2);
    }

    #[test]
    fn past_the_byte_bound_ids_are_not_kept() {
        let mut ids = Ids::new(100, 10);
        assert_eq!(ids.intern("123456").as_str(), "123456");
        assert_eq!(ids.intern("12345").as_str(), UNKNOWN);
        assert_eq!(ids.intern("1234").as_str(), "1234");
        assert_eq!(ids.intern("1").as_str(), UNKNOWN);
        assert_eq!(ids.bytes, 10);
    }
}
