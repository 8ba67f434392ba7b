//! `ringcache`: command-line access to a ringcache cluster (get, set, del, ring, stats).

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ringcache_client::duration::parse_duration;
use ringcache_client::summary::{StatsRow, ring_summary, stats_table};
use ringcache_client::{Client, Error};
use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

/// Exit codes, documented in docs/client.md so scripts can tell a miss from an outage.
const EXIT_NOT_FOUND: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_REJECTED: u8 = 3;
const EXIT_UNAVAILABLE: u8 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "ringcache",
    version,
    about = "Read and write a ringcache cluster, and inspect its ring",
    after_help = "Exit codes: 0 ok, 1 key not found (or other failure), 2 bad usage or input, \
                  3 a node rejected the request, 4 no node could be reached."
)]
struct Cli {
    /// Node URL(s) to start from, comma-separated (any node of the cluster, or its Service).
    #[arg(
        long,
        short = 'u',
        env = "RINGCACHE_URL",
        default_value = "http://127.0.0.1:7070",
        value_delimiter = ',',
        global = true
    )]
    url: Vec<String>,

    /// Bearer token for clusters with `spec.auth`.
    #[arg(long, env = "RINGCACHE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,

    /// Send every request to --url and let the nodes forward, instead of routing to each key's
    /// owner by pod address (for use from outside the cluster network).
    #[arg(long, global = true)]
    via_url: bool,

    /// CA certificate (PEM) to verify nodes with, for clusters with `spec.tls` (the Secret's
    /// `ca.crt`); use https:// URLs.
    #[arg(long, env = "RINGCACHE_CA_FILE", global = true)]
    ca_file: Option<std::path::PathBuf>,

    /// Name to verify every node's certificate against (default: the --url host when it is a
    /// DNS name, such as NAME.NAMESPACE.svc; nodes are reached by pod IP).
    #[arg(long, env = "RINGCACHE_TLS_SERVER_NAME", global = true)]
    tls_server_name: Option<String>,

    /// Per-node request timeout (then the next node is tried).
    #[arg(long, default_value = "5s", value_parser = parse_duration, global = true)]
    timeout: Duration,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the value of KEY to stdout (raw bytes, no newline added). Exit 1 when absent.
    Get { key: String },
    /// Store VALUE under KEY; `-` reads the value from stdin.
    Set {
        key: String,
        value: OsString,
        /// Expire after this long: 30s, 1500ms, 5m, 1h30m, 2d.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// Delete KEY (succeeds whether or not it existed).
    Del { key: String },
    /// Show the ring: epoch, members with state and address, partitions and primaries per
    /// member, balance, and the pending migration if any.
    Ring {
        /// Print the ring document as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Show every node's /v1/stats as a table. Exit 4 when any node did not answer.
    Stats {
        /// Print JSON instead: one object per node.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringcache: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringcache: {e:#}");
            ExitCode::from(exit_code_for(&e))
        }
    }
}

fn exit_code_for(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<Error>() {
        Some(Error::InvalidKey(_) | Error::InvalidUrl { .. } | Error::NoSeeds | Error::Tls(_)) => {
            EXIT_USAGE
        }
        Some(Error::Server { .. }) => EXIT_REJECTED,
        Some(Error::Unavailable { .. }) => EXIT_UNAVAILABLE,
        _ => 1,
    }
}

/// In a per-node table row the node is already named: keep only what went wrong.
fn short_error(e: &Error) -> String {
    match e {
        Error::Unavailable { attempts, .. } => match attempts.last() {
            Some(a) => a.error.clone(),
            None => e.to_string(),
        },
        Error::Server {
            status, message, ..
        } => format!("{status}: {message}"),
        other => other.to_string(),
    }
}

async fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let mut builder = Client::builder(cli.url.iter().map(String::as_str))
        .request_timeout(cli.timeout)
        .direct(!cli.via_url);
    if let Some(token) = &cli.token {
        builder = builder.token(token.as_str());
    }
    if let Some(path) = &cli.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| Error::Tls(format!("cannot read --ca-file {}: {e}", path.display())))?;
        builder = builder.ca_pem(pem);
    }
    if let Some(name) = &cli.tls_server_name {
        builder = builder.tls_server_name(name.as_str());
    }
    let client = builder
        .connect()
        .await
        .with_context(|| format!("cannot load the ring from {}", cli.url.join(", ")))?;
    Ok(client)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Read stdin before connecting, so a slow producer does not hold a connection idle.
    let stdin_value = match &cli.command {
        Command::Set { value, .. } if value == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading the value from stdin")?;
            Some(buf)
        }
        _ => None,
    };
    let client = connect(&cli).await?;
    match cli.command {
        Command::Get { key } => match client.get(&key).await? {
            Some(value) => {
                let mut out = std::io::stdout().lock();
                out.write_all(&value)
                    .context("writing the value to stdout")?;
                out.flush().context("writing the value to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("ringcache: key {key:?} not found");
                Ok(ExitCode::from(EXIT_NOT_FOUND))
            }
        },
        Command::Set { key, value, ttl } => {
            let bytes = stdin_value.unwrap_or_else(|| value.into_encoded_bytes());
            client.set(&key, bytes, ttl).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Del { key } => {
            client.del(&key).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ring { json } => {
            let ring = client.ring();
            if json {
                println!("{}", ring.to_json_pretty());
            } else {
                print!("{}", ring_summary(&ring));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Stats { json } => {
            let nodes = client.stats().await;
            let failed = nodes.iter().filter(|n| n.stats.is_err()).count();
            if json {
                let list: Vec<serde_json::Value> = nodes
                    .iter()
                    .map(|n| {
                        serde_json::json!({
                            "id": n.id,
                            "addr": n.addr,
                            "state": n.state.map(|s| s.as_str()),
                            "stats": n.stats.as_ref().ok(),
                            "error": n.stats.as_ref().err().map(ToString::to_string),
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).context("encoding stats")?
                );
            } else {
                let rows: Vec<StatsRow> = nodes
                    .into_iter()
                    .map(|n| StatsRow {
                        node: n.id,
                        state: n.state,
                        stats: n.stats.map_err(|e| short_error(&e)),
                    })
                    .collect();
                print!("{}", stats_table(&rows));
            }
            if failed > 0 {
                eprintln!("ringcache: {failed} node(s) did not answer");
                return Ok(ExitCode::from(EXIT_UNAVAILABLE));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_tell_usage_rejection_and_outage_apart() {
        let usage = anyhow::Error::new(Error::InvalidKey("empty key".into()));
        let rejected = anyhow::Error::new(Error::Server {
            node: "n".into(),
            status: 401,
            code: "unauthorized".into(),
            message: "bad token".into(),
        })
        .context("set");
        let down = anyhow::Error::new(Error::Unavailable {
            op: "get",
            attempts: Vec::new(),
        })
        .context("get");
        assert_eq!(exit_code_for(&usage), EXIT_USAGE);
        assert_eq!(exit_code_for(&rejected), EXIT_REJECTED);
        assert_eq!(exit_code_for(&down), EXIT_UNAVAILABLE);
        assert_eq!(exit_code_for(&anyhow::anyhow!("other")), 1);
    }
}
