//! ringcache operator: the `CacheCluster` resource, the pure builders and decisions, and the
//! reconcile loop that drives StatefulSets, the ring ConfigMap and node migrations.
//!
//! Pure (no I/O, unit-tested directly): `types`, `validate`, `build`, `members`, `ringdoc`,
//! `decide`, `status`. I/O: `observed::observe` (every read of a pass), `apply` (every write),
//! `nodes` (node internal API), `reconcile` (one pass), `controller`, `http`.

pub mod apply;
pub mod build;
pub mod context;
pub mod controller;
pub mod crd;
pub mod decide;
pub mod http;
pub mod members;
pub mod metrics;
pub mod nodes;
pub mod observed;
pub mod reconcile;
pub mod ringdoc;
pub mod status;
pub mod types;
pub mod validate;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod reconcile_tests;
