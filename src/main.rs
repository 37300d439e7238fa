//! The `onair` command: `serve`, `check-config` and `announce-test`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use onair::config::Config;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "onair",
    version,
    about = "Self-hosted live streaming: RTMP in, HLS out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server.
    Serve {
        /// Configuration file (default: built-in defaults, then config/default.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print the effective settings, secrets redacted.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Post a test message to the enabled announce targets, to check their credentials.
    AnnounceTest {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only this target: twitter, mastodon, bluesky or a webhook's name (webhook-0, ...).
        #[arg(long)]
        target: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match load_or_report(config.as_deref()) {
            Some(cfg) => {
                print!("{}", cfg.to_redacted_toml());
                // `serve` raises its soft limit to the hard one: judge the budgets by that.
                if let Ok(l) = onair::limits::raise_open_file_limit() {
                    let b = onair::limits::budget(&cfg, l.hard);
                    if !b.fits() {
                        eprintln!(
                            "onair: warning: {}; serve will lower http.max_event_streams to {} \
                             (raise the limit: ulimit -n, LimitNOFILE= in systemd, --ulimit nofile= \
                             in a container)",
                            b.describe(),
                            b.event_streams_that_fit()
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        },
        Command::AnnounceTest { config, target } => {
            let Some(cfg) = load_or_report(config.as_deref()) else {
                return ExitCode::from(2);
            };
            init_logs(&cfg);
            announce_test(cfg, target.as_deref())
        }
        Command::Serve { config } => {
            let Some(mut cfg) = load_or_report(config.as_deref()) else {
                return ExitCode::from(2);
            };
            init_logs(&cfg);
            fit_open_file_limit(&mut cfg);
            match serve(cfg, config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("onair: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Loads the configuration, or says on stderr what is wrong with it (exit code 2 follows).
fn load_or_report(path: Option<&std::path::Path>) -> Option<Config> {
    Config::load(path)
        .map_err(|e| eprintln!("onair: invalid configuration: {e}"))
        .ok()
}

/// Raises the open-file limit as far as the hard limit allows and fits the connection budgets
/// to it (`onair::limits`), saying what it got.
fn fit_open_file_limit(cfg: &mut Config) {
    match onair::limits::raise_open_file_limit() {
        Ok(l) => {
            tracing::info!(
                before = l.before,
                soft = l.soft,
                hard = l.hard,
                "open-file limit (soft limit raised to the hard limit)"
            );
            if let Some(b) = onair::limits::fit(cfg, l.soft) {
                tracing::warn!(
                    "{}: http.max_event_streams lowered to {} so that other connections still \
                     fit (raise the limit: ulimit -n, LimitNOFILE= in systemd, --ulimit nofile= \
                     in a container)",
                    b.describe(),
                    cfg.http.max_event_streams
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}

fn init_logs(cfg: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn serve(cfg: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let mut signals = Signals::install().context("installing signal handlers")?;
        let server = onair::Server::start(cfg).await?;
        // A plain line on stdout for scripts and tests that need the bound addresses.
        let rtmps = server
            .rtmps_addr
            .map(|a| format!(" rtmps={a}"))
            .unwrap_or_default();
        let webrtc = server
            .webrtc_addr
            .map(|a| format!(" webrtc={a}"))
            .unwrap_or_default();
        let srt = server
            .srt_addr
            .map(|a| format!(" srt={a}"))
            .unwrap_or_default();
        println!(
            "onair listening rtmp={} http={}{rtmps}{srt}{webrtc}",
            server.rtmp_addr, server.http_addr
        );
        loop {
            match signals.next().await {
                Signal::Stop => break,
                Signal::Reload => match Config::load(path.as_deref()) {
                    Ok(new) => {
                        server.reload(new);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reload refused: the configuration in force is kept")
                    }
                },
            }
        }
        tracing::info!("shutting down: ending streams and draining connections");
        tokio::select! {
            _ = server.shutdown(Duration::from_secs(4)) => {}
            _ = signals.next() => {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
        }
        tracing::info!("stopped");
        Ok(())
    })
}

fn announce_test(cfg: Config, target: Option<&str>) -> ExitCode {
    use onair::announce::{self, AnnounceError, Delivery};
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("onair: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(announce::send_test(&cfg, target)) {
        Err(e @ (AnnounceError::UnknownTarget { .. } | AnnounceError::NoTargets)) => {
            eprintln!("onair: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("onair: {e}");
            ExitCode::FAILURE
        }
        Ok(results) => {
            let mut ok = true;
            for (name, d) in results {
                match d {
                    Delivery::Delivered { tries } => {
                        println!("{name}: ok (posted after {tries} tries)")
                    }
                    Delivery::GaveUp { tries, error } => {
                        ok = false;
                        println!("{name}: FAILED after {tries} tries: {error}");
                    }
                    Delivery::Cancelled => {
                        ok = false;
                        println!("{name}: cancelled");
                    }
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

enum Signal {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP: re-read the configuration.
    Reload,
}

/// Signal handlers, installed once before the server starts so that no signal is missed (an
/// early SIGHUP would otherwise kill the process with the default action).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}
