// SPDX-License-Identifier: GPL-2.0
//! kvm-pfi: control and observe the kvm-pfi KVM guest introspection module.
//!
//! Exit status: see `error::exit` and `kvm-pfi --help` (0 success, 1
//! operational error, 2 usage, 3 matches with --fail-on-match, 65 bad data,
//! 66 missing input, 69 module not loaded, 77 permission denied).

mod abi;
mod cli;
mod commands;
mod dev;
mod error;
mod events;
mod formats;
mod genl;
mod kernel_image;
mod linux;
mod sigs;
mod snapshot;
mod targets;
mod vmfd;
mod watch;
mod yara;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::from(error::exit::OK),
        Err(e) => {
            eprintln!("kvm-pfi: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
