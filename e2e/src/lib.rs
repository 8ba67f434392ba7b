//! End-to-end tests for ringcache against a real Kubernetes cluster.
//!
//! The tests in `tests/` talk only to the cluster that `KUBECONFIG` names, and only through its API
//! server (nodes are reached through the API server's service and pod proxy, and the Redis port
//! through its port-forward stream, so no local port, ingress or `kubectl` is needed). Where `KUBECONFIG` is unset or the cluster does not answer quickly, every test
//! prints `skipped: no cluster` and passes, so `cargo test --workspace` stays green on machines
//! without Kubernetes.
//!
//! The library half is split into pure parts that unit tests cover without any cluster
//! ([`resource`], [`status`], [`paths`], [`keys`], [`resp`], the rollout predicate in [`rollout`],
//! the answer classification in [`nodes`], and [`checker`], which the cluster simulation shares)
//! and the I/O parts ([`harness`], [`nodes`], [`load`], [`diagnostics`]).
//!
//! Every request has a deadline ([`harness::API_TIMEOUT`], [`nodes::NODE_TIMEOUT`]) and every
//! wait both a deadline and a progress line at least every [`harness::PROGRESS_EVERY`]; a failed
//! scenario prints its namespace's objects, Events and the node and operator logs.

pub mod checker;
pub mod diagnostics;
pub mod error;
pub mod harness;
pub mod keys;
pub mod load;
pub mod nodes;
pub mod paths;
pub mod resource;
pub mod resp;
pub mod rollout;
pub mod status;

pub use error::E2eError;
pub use harness::{Ctx, Probe, SKIPPED, run};
