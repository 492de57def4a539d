//! The live incident components the API finds, by id: the state of those that keep
//! incidents in memory, the store of those that share them. During a reload two
//! instances of one component hold the same thing; it stays listed until both are gone.

use std::sync::{Arc, Mutex};

use super::IncidentState;
use super::store::StoreApi;
use crate::component::Live;

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
