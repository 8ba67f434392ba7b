//! What every reconcile pass works with: the clients, the event recorder and the metrics, and
//! the error a pass can end in.

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::Recorder;

use crate::build;
use crate::decide;
use crate::metrics::Metrics;
use crate::nodes::NodeApi;

pub struct Context {
    pub client: Client,
    pub nodes: Arc<dyn NodeApi>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Build(#[from] build::BuildError),
    #[error(transparent)]
    Decide(#[from] decide::DecideError),
    #[error("cannot generate the internal token: {0}")]
    Token(String),
    #[error("Secret {0} has no usable `token` key")]
    BadSecret(String),
}

impl Error {
    /// Short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Build(_) => "build",
            Error::Decide(_) => "decide",
            Error::Token(_) => "token",
            Error::BadSecret(_) => "secret",
        }
    }
}
