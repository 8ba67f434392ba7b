use clap::Parser;
use ringcache_node::config::{Args, LogFormat, NodeConfig};
use tracing_subscriber::EnvFilter;

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logs(args.log_format);
    let cfg = NodeConfig::from_args(args)?;
    ringcache_node::server::run(cfg).await
}
