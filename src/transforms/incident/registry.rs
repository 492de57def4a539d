//! The live incident components the API finds, by id: the state of those that keep
//! incidents in memory, the store of those that share them. During a reload two
//! instances of one component hold the same thing; it stays listed until both are gone.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use super::IncidentState;
use super::store::StoreApi;
use crate::state_file::lock;

/// What the instances of one component hold, and how many of them hold it.
type Held<T> = (Arc<T>, usize);

/// Component id → what its instances hold.
pub(crate) struct Live<T> {
    map: LazyLock<Mutex<HashMap<String, Held<T>>>>,
}

impl<T> Live<T> {
    const fn new() -> Self {
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

/// Components keeping their incidents in memory (a running pipeline's only: `validate`
/// and `sluice test` build without a data dir and are not listed).
pub(crate) static LOCAL: Live<Mutex<IncidentState>> = Live::new();

/// Components keeping their incidents in the shared store.
pub(crate) static STORES: Live<StoreApi> = Live::new();

/// Every live incident component keeping incidents in memory, by id.
pub(crate) fn components() -> Vec<(String, Arc<Mutex<IncidentState>>)> {
    LOCAL.all()
}

/// Every live incident component with a shared store, by id.
pub(crate) fn stores() -> Vec<(String, Arc<StoreApi>)> {
    STORES.all()
}
