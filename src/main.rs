//! The `switchyard` binary: argument parsing and wiring only.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use switchyard::app::Gateway;
use switchyard::config::Config;

/// jemalloc, not glibc malloc. Measured with `bench/profile nonstream` and the capacity stage
/// (BENCHMARKS.md, issue 18): ~8 % fewer instructions per request, ~12 % less resident memory
/// per open stream, and with background purging a burst's memory goes back to the OS without
/// the glibc `malloc_trim` task (src/memory.rs, which stays for library users on glibc).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at start (the crate builds it with the `_rjem_` prefix):
/// background threads purge freed pages after 5 s unused, straight back to the OS (no lazy
/// `MADV_FREE` stage, whose pages would still count as resident). `_RJEM_MALLOC_CONF` in the
/// environment overrides them.
#[cfg(all(not(target_env = "msvc"), not(target_os = "macos")))]
#[export_name = "_rjem_malloc_conf"]
pub static JEMALLOC_CONF: &[u8; 60] =
    b"background_thread:true,dirty_decay_ms:5000,muzzy_decay_ms:0\0";

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "An LLM failover gateway for OpenAI and Anthropic clients"
)]
struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax; default info, warn for the demo); RUST_LOG overrides it.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (YAML).
        #[arg(
            long,
            short,
            env = "SWITCHYARD_CONFIG",
            default_value = "switchyard.yaml"
        )]
        config: PathBuf,
        /// Override the config's `listen` address.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Reload the config when the file changes (checked every second), as SIGHUP and
        /// `POST /admin/reload` do.
        #[arg(long)]
        watch: bool,
    },
    /// Validate a config file and the environment it reads, without serving.
    ///
    /// Exits 0 and prints what the config serves, or 1 with every problem's file, line and
    /// key (every unset variable at once).
    Check {
        /// Config file (YAML).
        #[arg(
            long,
            short,
            env = "SWITCHYARD_CONFIG",
            default_value = "switchyard.yaml"
        )]
        config: PathBuf,
    },
    /// Print a shell completion script (e.g. `switchyard completions bash > ~/.local/share/bash-completion/completions/switchyard`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run a fault-injecting fake upstream that speaks both dialects.
    #[cfg(feature = "mock")]
    Mock {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// Name used in replies ("Hello from NAME").
        #[arg(long, default_value = "mock")]
        name: String,
        /// Answer status faults in this provider's error dialect: gemini, groq, deepseek,
        /// openrouter, mistral, together, azure_openai, xai.
        #[arg(long)]
        provider: Option<String>,
    },
    /// Print the health of every backend scope of a running gateway.
    Status {
        /// The gateway's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Admin key, when the gateway sets admin.key_env.
        #[arg(long, env = "SWITCHYARD_ADMIN_KEY", hide_env_values = true)]
        admin_key: Option<String>,
        /// Print the raw JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Start two mock upstreams and the gateway, show failovers, then keep serving.
    #[cfg(feature = "mock")]
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Exit after the scripted requests instead of serving.
        #[arg(long)]
        no_serve: bool,
    },
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The trace exporter's layer goes first, idle until `telemetry::init` (after the config).
    let registry = tracing_subscriber::registry()
        .with(switchyard::telemetry::layer())
        .with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => registry.with(fmt.compact()).init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The commands that need neither logging nor a runtime.
    match &cli.command {
        Command::Check { config } => return exit(check(config)),
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "switchyard",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let default_level = match cli.command {
        #[cfg(feature = "mock")]
        Command::Demo { .. } => "error",
        Command::Status { .. } => "error",
        _ => "info",
    };
    init_logging(
        cli.log_format,
        cli.log_level.as_deref().unwrap_or(default_level),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve {
                config,
                listen,
                watch,
            } => serve(config, listen, watch).await,
            #[cfg(feature = "mock")]
            Command::Mock {
                listen,
                name,
                provider,
            } => mock(listen, name, provider).await,
            #[cfg(feature = "mock")]
            Command::Demo { listen, no_serve } => switchyard::demo::run(listen, !no_serve).await,
            Command::Status {
                url,
                admin_key,
                json,
            } => status(url, admin_key, json).await,
            Command::Check { .. } | Command::Completions { .. } => Ok(()),
        }
    });
    exit(result)
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `switchyard check`: the same load as `serve` (key commands run, variables read), then
/// what the config serves.
fn check(path: &std::path::Path) -> Result<(), String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    println!("{}: OK", path.display());
    print!("{}", config.summary());
    Ok(())
}

async fn serve(path: PathBuf, listen: Option<SocketAddr>, watch: bool) -> Result<(), String> {
    let mut config = Config::load(&path).map_err(|e| e.to_string())?;
    if let Some(l) = listen {
        config.set_listen(l)?;
    }
    switchyard::telemetry::init(&config.telemetry).map_err(|e| e.to_string())?;
    let config = Arc::new(config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut gw = Gateway::new(config)?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(8);
    gw.reload = Some(reload_tx.clone());
    let signals = stop_signals(reload_tx.clone())?;
    if watch {
        tokio::spawn(watch_file(path.clone(), reload_tx));
    }
    // A reload reads the same file, with the same `--listen` override.
    let loader: switchyard::server::ConfigLoader = Arc::new(move || {
        let mut config = Config::load(&path).map_err(|e| e.to_string())?;
        if let Some(l) = listen {
            config.set_listen(l)?;
        }
        Ok(config)
    });
    announce(&format!("switchyard listening on http://{addr}"));
    let (first, second) = (signals.clone(), signals);
    let stopped = switchyard::server::serve_with_reload(
        listener,
        Arc::new(gw),
        async move { signals_seen(first, 1).await },
        async move { signals_seen(second, 2).await },
        Some((loader, reload_rx)),
    )
    .await;
    // Spans of the last requests go out before the exit.
    switchyard::telemetry::shutdown().await;
    match stopped.map_err(|e| e.to_string())? {
        switchyard::server::Stopped::Forced => Err("stopped at once by a second signal".into()),
        _ => Ok(()),
    }
}

/// Asks for a reload whenever `path`'s modification time or size changes (checked every
/// second; a file being written is read when it stops changing).
async fn watch_file(path: PathBuf, reload: switchyard::lifecycle::ReloadSender) {
    let stamp = |p: &PathBuf| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut seen = stamp(&path);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = stamp(&path);
        if now == seen || now.is_none() {
            continue;
        }
        // Wait one more tick for a write in progress to settle.
        tick.tick().await;
        if stamp(&path) != now {
            continue;
        }
        seen = now;
        tracing::info!(file = %path.display(), "config file changed: reloading");
        let (reply, answer) = tokio::sync::oneshot::channel();
        if reload.send(reply).await.is_err() {
            return;
        }
        let _ = answer.await;
    }
}

/// Counts SIGTERM and SIGINT: the first drains the gateway, the second stops it at once.
/// SIGHUP asks for a reload.
fn stop_signals(
    reload: switchyard::lifecycle::ReloadSender,
) -> Result<tokio::sync::watch::Receiver<u32>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot watch SIGHUP: {e}"))?;
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = hup.recv() => {
                    // Answered in the log (reload_config logs either way).
                    let (reply, _answer) = tokio::sync::oneshot::channel();
                    let _ = reload.try_send(reply);
                    continue;
                }
            }
            tx.send_modify(|n| *n += 1);
        }
    });
    Ok(rx)
}

async fn signals_seen(mut rx: tokio::sync::watch::Receiver<u32>, n: u32) {
    if rx.wait_for(|seen| *seen >= n).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(feature = "mock")]
async fn mock(listen: SocketAddr, name: String, provider: Option<String>) -> Result<(), String> {
    use switchyard::mock::MockProvider;
    let provider = match provider.as_deref() {
        None => None,
        Some(p) => Some(MockProvider::parse(p).ok_or_else(|| {
            format!(
                "unknown provider {p:?}; one of: {}",
                MockProvider::NAMES.join(", ")
            )
        })?),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    announce(&format!(
        "switchyard mock {name} listening on http://{addr}"
    ));
    switchyard::mock::serve_as(listener, name, provider)
        .await
        .map_err(|e| e.to_string())
}

async fn status(url: String, admin_key: Option<String>, json: bool) -> Result<(), String> {
    let endpoint = format!("{}/admin/backends", url.trim_end_matches('/'));
    let mut req = reqwest::Client::new()
        .get(&endpoint)
        .timeout(std::time::Duration::from_secs(5));
    if let Some(k) = admin_key {
        req = req.bearer_auth(k);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{endpoint} answered {status}: {text}"));
    }
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{endpoint}: not JSON: {e}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or(text));
    } else {
        print!("{}", switchyard::admin::render_table(&v));
    }
    Ok(())
}

/// One line on stdout that scripts and tests wait for.
fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
