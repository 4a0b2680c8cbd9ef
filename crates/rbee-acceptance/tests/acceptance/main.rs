//! rbee's executable specification: `features/*.feature`, run against the real binaries on
//! a cluster of network namespaces (see `rbee_acceptance::cluster`).
//!
//! Run everything with `scripts/acceptance.sh`; one scenario with
//! `scripts/acceptance.sh --name "cold start"` (a regular expression on scenario names).
//! Needs root (namespaces), `/usr/sbin/sshd` and a built workspace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod steps;
mod world;

use std::time::Duration;

use cucumber::World as _;
use cucumber::writer::Stats as _;
use futures::FutureExt as _;
use rbee_acceptance::{cluster, processes};

use crate::world::Rbee;

fn main() {
    // Test runners that speak libtest's protocol (cargo nextest) list every test binary
    // first; this one has no libtest tests, so it lists none instead of running the suite.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let code = runtime.block_on(run());
    runtime.shutdown_timeout(Duration::from_secs(5));
    // Whatever happened, nothing may stay behind.
    cluster::sweep();
    let left = cluster::leftovers();
    let strays = processes::rbee_only(processes::tagged());
    if !left.is_empty() || !strays.is_empty() {
        eprintln!("left behind after the run:");
        for l in &left {
            eprintln!("  {l}");
        }
        for p in &strays {
            eprintln!("  process {p}");
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &p.pid.to_string()])
                .status();
        }
        std::process::exit(1);
    }
    std::process::exit(code);
}

async fn run() -> i32 {
    if let Err(reason) = world::preconditions() {
        eprintln!("cannot run the acceptance suite: {reason}");
        println!("0 passed, 1 failed");
        return 1;
    }
    world::prepare_models().await;
    let features = concat!(env!("CARGO_MANIFEST_DIR"), "/features");
    let suite = Rbee::cucumber()
        .max_concurrent_scenarios(1)
        .fail_on_skipped()
        .after(|_, _, _, finished, world| {
            async move {
                if let Some(world) = world {
                    world.tear_down(finished).await;
                }
            }
            .boxed_local()
        })
        .run(features);
    let interrupted = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    };
    tokio::select! {
        writer = suite => {
            let stats = writer.scenarios_stats();
            let failed = stats.failed + writer.parsing_errors();
            println!("{} passed, {} failed", stats.passed, failed);
            i32::from(failed > 0 || stats.passed == 0)
        }
        () = interrupted => {
            eprintln!("interrupted: tearing the cluster down");
            println!("0 passed, 1 failed (interrupted)");
            130
        }
    }
}
