//! The `switchboard` binary: parse the command line, set up logging and the async
//! runtime, and hand over to the library. Errors are printed here, once, with their
//! causes (`error: what failed: why: why that`).

mod cli;
mod logging;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};
use switchboard::util::error::Chain;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `connect` is a client: its own outcome is the message, so only warnings are logged.
    let default_filter = match cli.command {
        Command::Connect(_) | Command::Status(_) | Command::Test(_) => "warn",
        _ => "info,wasmtime=warn,cranelift=warn",
    };
    if let Err(e) = logging::init(cli.log_format, default_filter) {
        eprintln!("error: {}", Chain(&e));
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", Chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard limit: every connection is a socket,
/// and the usual soft default of 1024 is far below what a server needs.
fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit calls on a local struct.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("cannot raise the open-file limit: {}", std::io::Error::last_os_error());
            }
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    raise_fd_limit();
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| Failed("starting the async runtime", e))?;
    tokio.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let config = (*args).into_config()?;
                let shutdown = shutdown_signal().map_err(|e| Failed("installing signal handlers", e))?;
                let signals = control_signals().map_err(|e| Failed("installing signal handlers", e))?;
                switchboard::app::serve::serve(config, shutdown, signals).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Connect(args) => {
                let env = args.env()?;
                switchboard::app::connect::connect(&args.addr, &args.plugin, env, &args.cache.cache()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Check(args) => {
                default_sigpipe();
                let ok = switchboard::app::check::check(&args.paths, &args.cache.cache()).await?;
                Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
            Command::Test(args) => {
                default_sigpipe();
                let options = args.options()?;
                let ok = switchboard::app::test::test(&args.plugin, &args.transcripts, options, &args.cache.cache()).await?;
                Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
            Command::New(args) => {
                let (lang, world) = args.kind();
                let created = switchboard::app::new::new_project(std::path::Path::new("."), &args.name, lang, world)?;
                print_out(&created.to_string())?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Status(args) => {
                let action = args.action.as_ref().map(cli::StatusAction::request);
                let out = switchboard::app::status::status(&args.admin, args.admin_token_file.as_deref(), action).await?;
                print_out(&out)?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// For the commands that only print and open no socket (`check`, `test`): a closed
/// stdout (`switchboard check *.wasm | head -1`) ends the process quietly, as it ends `cat`,
/// instead of a panic in `println!`. (Rust ignores SIGPIPE so that a server sees EPIPE on
/// a socket whose peer left; `serve` keeps it that way.)
fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to the default has no preconditions; no
    // handler of ours is replaced.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
fn print_out(text: &str) -> Result<(), Failed> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failed("writing to stdout", e)),
        _ => Ok(()),
    }
}

/// The binary's own failures (before or around the library): what it was doing, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failed(&'static str, #[source] std::io::Error);

/// Installs the SIGHUP (reload) and SIGUSR1 (status) handlers now, so neither signal
/// kills the process (SIGHUP's default action, also what a closed terminal sends).
fn control_signals() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<switchboard::app::serve::Signal>> {
    use switchboard::app::serve::Signal;
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let signal = tokio::select! {
                Some(()) = hup.recv() => Signal::Reload,
                Some(()) = usr1.recv() => Signal::Status,
                else => return,
            };
            if tx.send(signal).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Installs the SIGINT/SIGTERM handlers now (so no signal can arrive before them and
/// kill the process outright); the future resolves at the first signal, and a second
/// one exits at once.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("second signal: exiting now");
            std::process::exit(1);
        });
    })
}
