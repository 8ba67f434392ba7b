//! The cluster simulation (DESIGN.md "Testing levels" 4): the operator's real reconcile over an
//! in-memory Kubernetes API ([`apiserver`]), with StatefulSet-controller and kubelet stand-ins
//! that run real `ringcache-node` processes on 127.0.0.0/8.

pub mod apiserver;
