// SPDX-License-Identifier: GPL-2.0
//! kvm-pfi: control and observe the kvm-pfi KVM guest introspection module.
//!
//! Exit status: 0 success, 1 operational error (one line on stderr),
//! 2 usage error (clap's).

mod abi;
mod cli;
mod commands;
mod dev;
mod error;
mod events;
mod genl;
mod targets;
mod vmfd;
mod watch;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvm-pfi: {e}");
            ExitCode::from(1)
        }
    }
}
