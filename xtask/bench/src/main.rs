//! `switchboard-bench`: in one run on loopback, starts plain tokio baselines (and the
//! seed's Python servers), then the real `switchboard` binary, drives each with the same
//! load generator, and prints a table of absolute figures and ratios. Run it with
//! `cargo xtask bench [ARGS]`; `--help` lists the options.
//!
//! Layout: `cli` (options), `process` (server subprocesses, RSS, logs, RLIMIT_NOFILE),
//! `servers` (the tokio baselines, run as `switchboard-bench baseline KIND`), `load` (the
//! load generators and their shared helpers), `scenarios` (rtt, stream, connrate, idle,
//! fanout, getfile), `report` (the table).

mod cli;
mod load;
mod process;
mod report;
mod scenarios;
mod servers;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{Cli, Internal};

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    match cli.command {
        Some(Internal::Baseline(args)) => runtime.block_on(servers::serve(args)),
        None => {
            let config = cli.bench.resolve()?;
            let report = runtime.block_on(scenarios::run(config))?;
            print!("{report}");
            Ok(())
        }
    }
}
