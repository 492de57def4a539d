//! What a `remap` program sees of an event still in its JSON text: the top-level fields
//! the program names, picked out of the text (see [`super::field_splice`]). It records
//! which of them the program wrote, so only those go back into the text, and flags any
//! access outside them (a function reading `.` that VRL does not list): the run is then
//! thrown away and made again on the whole payload, with `%` as it was before.

use std::cell::Cell;

use vrl::compiler::{SecretTarget, Target};
use vrl::path::{OwnedSegment, OwnedTargetPath, OwnedValuePath, PathPrefix};
use vrl::value::{KeyString, Secrets, Value};

use super::VrlMetadata;
use super::vrl_metadata::run_secrets;

/// A program's target made of some top-level fields of an event.
#[derive(Debug)]
pub(crate) struct FieldTarget<'a> {
    /// An object of the fields named in `names` that the event has.
    fields: &'a mut Value,
    /// At most 64 names: bit `i` of `written` stands for `names[i]`.
    names: &'a [KeyString],
    written: u64,
    /// Whether the program reached outside `names`.
    missed: Cell<bool>,
    /// Whether VRL's runtime has checked that `.` exists, which it does once before it
    /// runs a program; any later read of `.` is the program's own.
    root_checked: Cell<bool>,
    metadata: &'a mut VrlMetadata,
    /// `%` as it was before the program first wrote it.
    saved: Option<VrlMetadata>,
    secrets: &'a mut Secrets,
}

impl<'a> FieldTarget<'a> {
    pub(crate) fn new(
        fields: &'a mut Value,
        names: &'a [KeyString],
        metadata: &'a mut VrlMetadata,
        secrets: &'a mut Secrets,
    ) -> Self {
        debug_assert!(names.len() <= 64, "one bit per name");
        Self {
            fields,
            names,
            written: 0,
            missed: Cell::new(false),
            root_checked: Cell::new(false),
            metadata,
            saved: None,
            secrets,
        }
    }

    /// Which names the program wrote (set, changed in place or deleted), bit `i` for
    /// `names[i]`; meaningful only if it did not miss.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Whether the program reached outside its fields; if so, `%` is put back as it was.
    pub(crate) fn missed(&mut self) -> bool {
        let missed = self.missed.get();
        if missed && let Some(saved) = self.saved.take() {
            *self.metadata = saved;
        }
        missed
    }

    /// The index of the name `path` starts with; `None` (a miss) for `.` itself, an
    /// index, or another field.
    fn name_of(&self, path: &OwnedValuePath) -> Option<usize> {
        let found = match path.segments.first() {
            Some(OwnedSegment::Field(name)) => self.names.iter().position(|n| n == name),
            _ => None,
        };
        if found.is_none() {
            self.missed.set(true);
        }
        found
    }

    /// A field about to change: marks it written.
    fn write(&mut self, path: &OwnedValuePath) -> bool {
        match self.name_of(path) {
            Some(i) => {
                self.written |= 1 << i;
                true
            }
            None => false,
        }
    }

    fn metadata_mut(&mut self) -> &mut Value {
        if self.saved.is_none() {
            self.saved = Some(self.metadata.clone());
        }
        self.metadata.make_mut()
    }
}

impl Target for FieldTarget<'_> {
    fn target_insert(&mut self, path: &OwnedTargetPath, value: Value) -> Result<(), String> {
        match path.prefix {
            PathPrefix::Event => {
                if self.write(&path.path) {
                    self.fields.insert(&path.path, value);
                }
            }
            PathPrefix::Metadata => {
                self.metadata_mut().insert(&path.path, value);
            }
        }
        Ok(())
    }

    fn target_get(&self, path: &OwnedTargetPath) -> Result<Option<&Value>, String> {
        Ok(match path.prefix {
            PathPrefix::Event if path.path.is_root() => {
                if self.root_checked.replace(true) {
                    self.missed.set(true);
                }
                // Answered either way: the runtime's check needs it, and a run that
                // missed is thrown away.
                Some(&*self.fields)
            }
            PathPrefix::Event => match self.name_of(&path.path) {
                Some(_) => self.fields.get(&path.path),
                None => None,
            },
            PathPrefix::Metadata => self.metadata.get().get(&path.path),
        })
    }

    fn target_get_mut(&mut self, path: &OwnedTargetPath) -> Result<Option<&mut Value>, String> {
        Ok(match path.prefix {
            PathPrefix::Event => match self.write(&path.path) {
                true => self.fields.get_mut(&path.path),
                false => None,
            },
            PathPrefix::Metadata => self.metadata_mut().get_mut(&path.path),
        })
    }

    fn target_remove(
        &mut self,
        path: &OwnedTargetPath,
        compact: bool,
    ) -> Result<Option<Value>, String> {
        Ok(match path.prefix {
            PathPrefix::Event => match self.write(&path.path) {
                true => self.fields.remove(&path.path, compact),
                false => None,
            },
            PathPrefix::Metadata => self.metadata_mut().remove(&path.path, compact),
        })
    }
}

run_secrets!(FieldTarget);
