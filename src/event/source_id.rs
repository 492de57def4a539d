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
//! disk buffer. Ids are short names, so that is a few bytes each.

use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{Mutex, OnceLock};

/// The interned id of the component that made an event. Copying it costs nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId(&'static str);

impl SourceId {
    /// The id `name`, stored on first use. Takes a lock: call it when a component is
    /// built, not per event.
    pub fn intern(name: &str) -> Self {
        static IDS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
        let mut ids = IDS
            .get_or_init(Mutex::default)
            .lock()
            // The set is only ever inserted into, so a panic elsewhere cannot have left
            // it half-changed.
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&known) = ids.get(name) {
            return Self(known);
        }
        let kept: &'static str = Box::leak(name.into());
        ids.insert(kept);
        Self(kept)
    }

    /// The id's text.
    pub fn as_str(&self) -> &'static str {
        self.0
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
    use super::SourceId;

    #[test]
    fn the_same_name_is_stored_once() {
        let a = SourceId::intern("hooks_source_id_test");
        let b = SourceId::intern(&String::from("hooks_source_id_test"));
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_ne!(a, SourceId::intern("other_source_id_test"));
        assert_eq!(a.to_string(), "hooks_source_id_test");
        assert_eq!(format!("{a:?}"), "\"hooks_source_id_test\"");
    }
}
