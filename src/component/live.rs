//! Live component instances by id, for the API to find: what an instance holds (its
//! state, its store, its intake). During a reload two instances of one component may
//! hold the same thing; it stays listed until both are gone.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use crate::state_file::lock;

/// What the instances of one component hold, and how many of them hold it.
type Held<T> = (Arc<T>, usize);

/// Component id → what its instances hold.
pub(crate) struct Live<T> {
    map: LazyLock<Mutex<HashMap<String, Held<T>>>>,
}

impl<T> Live<T> {
    pub(crate) const fn new() -> Self {
        Self {
            map: LazyLock::new(|| Mutex::new(HashMap::new())),
        }
    }

    /// An instance of component `id` holds `value`.
    pub(crate) fn add(&self, id: &str, value: &Arc<T>) {
        let mut map = lock(&self.map);
        match map.get_mut(id) {
            Some((held, n)) if Arc::ptr_eq(held, value) => *n += 1,
            _ => {
                map.insert(id.to_owned(), (Arc::clone(value), 1));
            }
        }
    }

    /// The instance holding `value` went away.
    pub(crate) fn remove(&self, id: &str, value: &Arc<T>) {
        let mut map = lock(&self.map);
        if let Some((held, n)) = map.get_mut(id)
            && Arc::ptr_eq(held, value)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(id);
            }
        }
    }

    /// Everything held, by component id.
    pub(crate) fn all(&self) -> Vec<(String, Arc<T>)> {
        let mut all: Vec<(String, Arc<T>)> = lock(&self.map)
            .iter()
            .map(|(id, (held, _))| (id.clone(), Arc::clone(held)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
