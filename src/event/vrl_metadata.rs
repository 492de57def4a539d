//! VRL's `%` metadata, shared between the events of one request or read.
//!
//! A webhook request's `%headers`, `%route` and `%request_id` are the same for every
//! event in its body. Copying that object into each event, and dropping each copy at
//! the sink, cost about 14% of the CPU in the NDJSON → http load scenario, so events
//! share one copy and a VRL program that writes `%` gets its own (copy on write).

use std::cell::Cell;
use std::sync::Arc;

use vrl::compiler::{SecretTarget, Target};
use vrl::path::{OwnedSegment, OwnedTargetPath, OwnedValuePath, PathPrefix};
use vrl::value::{KeyString, ObjectMap, Secrets, Value};

static EMPTY: Value = Value::Object(ObjectMap::new());

/// An event's `%` metadata: an object, empty by default (which allocates nothing).
#[derive(Clone, Default)]
pub(crate) struct VrlMetadata(Option<Arc<Value>>);

impl VrlMetadata {
    /// Metadata to share: clones of the result point at one object.
    pub(crate) fn shared(value: Value) -> Self {
        match &value {
            Value::Object(m) if m.is_empty() => Self(None),
            _ => Self(Some(Arc::new(value))),
        }
    }

    pub(crate) fn get(&self) -> &Value {
        self.0.as_deref().unwrap_or(&EMPTY)
    }

    /// This event's own copy, made on the first write if it was shared.
    pub(crate) fn make_mut(&mut self) -> &mut Value {
        Arc::make_mut(
            self.0
                .get_or_insert_with(|| Arc::new(Value::Object(ObjectMap::new()))),
        )
    }
}

impl From<Value> for VrlMetadata {
    fn from(value: Value) -> Self {
        Self::shared(value)
    }
}

impl PartialEq for VrlMetadata {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl std::fmt::Debug for VrlMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// What a VRL program sees of an event: its payload, and `%` copied only if written.
#[derive(Debug)]
pub(crate) struct EventTarget<'a> {
    pub(crate) value: &'a mut Value,
    pub(crate) metadata: &'a mut VrlMetadata,
    pub(crate) secrets: &'a mut Secrets,
}

impl Target for EventTarget<'_> {
    fn target_insert(&mut self, path: &OwnedTargetPath, value: Value) -> Result<(), String> {
        match path.prefix {
            PathPrefix::Event => self.value.insert(&path.path, value),
            PathPrefix::Metadata => self.metadata.make_mut().insert(&path.path, value),
        };
        Ok(())
    }

    fn target_get(&self, path: &OwnedTargetPath) -> Result<Option<&Value>, String> {
        Ok(match path.prefix {
            PathPrefix::Event => self.value.get(&path.path),
            PathPrefix::Metadata => self.metadata.get().get(&path.path),
        })
    }

    fn target_get_mut(&mut self, path: &OwnedTargetPath) -> Result<Option<&mut Value>, String> {
        Ok(match path.prefix {
            PathPrefix::Event => self.value.get_mut(&path.path),
            PathPrefix::Metadata => self.metadata.make_mut().get_mut(&path.path),
        })
    }

    fn target_remove(
        &mut self,
        path: &OwnedTargetPath,
        compact: bool,
    ) -> Result<Option<Value>, String> {
        Ok(match path.prefix {
            PathPrefix::Event => self.value.remove(&path.path, compact),
            PathPrefix::Metadata => self.metadata.make_mut().remove(&path.path, compact),
        })
    }
}

/// What a read-only program (a condition, a key) sees of an event. Reading the payload
/// through `&` parses JSON text without dropping it, so an event that only passed a
/// `filter` or `route` is still sent as the text it came as.
#[derive(Debug)]
pub(crate) struct EventView<'a> {
    /// The payload, or only the top-level fields named in `only`.
    value: &'a Value,
    /// Set when `value` holds only some fields: a read outside them is a miss.
    only: Option<&'a [KeyString]>,
    /// Whether the program read outside `only`; its answer is then not to be trusted.
    pub(crate) missed: Cell<bool>,
    /// Whether VRL's runtime has checked that `.` exists, which it does once before it
    /// runs a program; any later read of `.` is the program's own.
    root_checked: Cell<bool>,
    metadata: &'a VrlMetadata,
    secrets: &'a mut Secrets,
}

impl<'a> EventView<'a> {
    /// A view of `event` whose payload is `value`: all of it, or the fields in `only`.
    pub(crate) fn new(
        value: &'a Value,
        only: Option<&'a [KeyString]>,
        event: &'a super::Event,
        secrets: &'a mut Secrets,
    ) -> Self {
        Self {
            value,
            only,
            missed: Cell::new(false),
            root_checked: Cell::new(false),
            metadata: event.vrl_metadata(),
            secrets,
        }
    }

    fn read_event<'v>(&'v self, path: &OwnedValuePath) -> Option<&'v Value> {
        if let Some(only) = self.only {
            let inside = match path.segments.first() {
                Some(OwnedSegment::Field(name)) => only.contains(name),
                Some(OwnedSegment::Index(_)) => false,
                None => !self.root_checked.replace(true),
            };
            if !inside {
                self.missed.set(true);
                // `.` is still answered: functions such as `unnest` read it without VRL
                // listing it and expect an object. The answer is discarded anyway.
                return path.is_root().then_some(self.value);
            }
        }
        self.value.get(path)
    }
}

/// The compiler refuses writes to `.` and `%` in a read-only program (assignments and
/// `del`), so these answers are never reached; they say why should that ever change.
const READ_ONLY: &str = "this program may not change the event";

impl Target for EventView<'_> {
    fn target_insert(&mut self, _: &OwnedTargetPath, _: Value) -> Result<(), String> {
        Err(READ_ONLY.into())
    }

    fn target_get(&self, path: &OwnedTargetPath) -> Result<Option<&Value>, String> {
        Ok(match path.prefix {
            PathPrefix::Event => self.read_event(&path.path),
            PathPrefix::Metadata => self.metadata.get().get(&path.path),
        })
    }

    fn target_get_mut(&mut self, _: &OwnedTargetPath) -> Result<Option<&mut Value>, String> {
        Err(READ_ONLY.into())
    }

    fn target_remove(&mut self, _: &OwnedTargetPath, _: bool) -> Result<Option<Value>, String> {
        Err(READ_ONLY.into())
    }
}

/// VRL's secrets live beside the event, in the program's run, for every target.
macro_rules! run_secrets {
    ($($target:ident),*) => {$(
        impl SecretTarget for $target<'_> {
            fn get_secret(&self, key: &str) -> Option<&str> {
                self.secrets.get_secret(key)
            }

            fn insert_secret(&mut self, key: &str, value: &str) {
                self.secrets.insert_secret(key, value);
            }

            fn remove_secret(&mut self, key: &str) {
                self.secrets.remove_secret(key);
            }
        }
    )*};
}

pub(super) use run_secrets;

run_secrets!(EventTarget, EventView);

#[cfg(test)]
mod tests {
    use super::*;

    fn object(pairs: &[(&str, i64)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), Value::from(*v)))
                .collect(),
        )
    }

    fn set(value: &mut Value, key: &str, n: i64) {
        value
            .as_object_mut()
            .expect("an object")
            .insert(key.into(), Value::from(n));
    }

    #[test]
    fn clones_share_until_one_is_written() {
        let a = VrlMetadata::shared(object(&[("n", 1)]));
        let mut b = a.clone();
        assert!(std::ptr::eq(a.get(), b.get()), "one object for both");
        set(b.make_mut(), "n", 2);
        assert_eq!(a.get(), &object(&[("n", 1)]));
        assert_eq!(b.get(), &object(&[("n", 2)]));
    }

    #[test]
    fn the_default_is_an_empty_object_that_allocates_on_first_write() {
        let mut m = VrlMetadata::default();
        assert!(m.0.is_none());
        assert_eq!(m.get(), &Value::Object(ObjectMap::new()));
        set(m.make_mut(), "k", 3);
        assert_eq!(m, VrlMetadata::from(object(&[("k", 3)])));
    }
}
