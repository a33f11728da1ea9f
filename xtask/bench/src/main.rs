//! `switchboard-bench`: in one run on loopback, starts plain tokio baselines (and the
//! seed's Python servers), then the real `switchboard` binary, drives each with the same
//! load generator, and prints a table of absolute figures and ratios. Run it with
//! `cargo xtask bench [ARGS]`; `--help` lists the options.
//!
//! Layout: `cli` (options), `process` (server subprocesses, RSS, logs, RLIMIT_NOFILE),
//! `servers` (the tokio baselines, run as `switchboard-bench baseline KIND`), `load` (the
//! load generators and their shared helpers), `stats` (latencies, errors, loop outcomes), `chat` (the chat clients of fanout),
//! `harness` (the run loop, `Bench::measure_all`, the work folder), `rounds`
//! (`Bench::measure_rounds`: servers measured in turn, for rtt, stream, connrate), `scenarios` (rtt,
//! stream, connrate, idle, fanout, getfile: switchboard against baselines), `multihost`
//! (fanout-hosts: two hosts on one redis-server against one), `stalled` (getfile
//! downloads never read: server memory per download), `faults`, `reload` and
//! `admin` (switchboard against itself), `report` (the table).

mod admin;
mod chat;
mod cli;
mod faults;
mod harness;
mod load;
mod multihost;
mod process;
mod reload;
mod report;
mod rounds;
mod scenarios;
mod servers;
mod stalled;
mod stats;
mod tls;

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
            let mut reports = Vec::with_capacity(config.repeat);
            for run in 1..=config.repeat {
                if config.repeat > 1 {
                    eprintln!("bench: run {run} of {}", config.repeat);
                    println!("## Run {run} of {}\n", config.repeat);
                }
                let report = runtime.block_on(harness::run(config.clone()))?;
                print!("{report}");
                reports.push(report);
            }
            if reports.len() > 1 {
                print!("\n{}", report::Spread(&reports));
            }
            Ok(())
        }
    }
}
