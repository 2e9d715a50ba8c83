// SPDX-License-Identifier: GPL-2.0
//! Command line: what the operator types, validated before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::abi;

const AFTER_HELP: &str = "\
Exit status:
  0  success
  1  operational error, reported on stderr as `kvm-pfi: <what>: <reason>`
  2  usage error

Most commands need root (or CAP_SYS_ADMIN): /dev/kvm_pfi is root-only, taking
another process's VM descriptor needs ptrace rights over it, and joining the
event group needs CAP_SYS_ADMIN.";

#[derive(Debug, Parser)]
#[command(
    name = "kvm-pfi",
    version,
    about = "Attach the kvm-pfi introspection module to KVM VMs and observe them",
    long_about = "Attach the kvm-pfi introspection module to KVM virtual machines, \
        list and detach them, read their vCPU entry/exit counters, and follow \
        the module's events.\n\n\
        Control goes through the ioctls of /dev/kvm_pfi; events come from the \
        \"kvm_pfi\" generic netlink family.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Only for the commands that use the device: `watch` does not.
#[derive(Debug, Clone, Args)]
pub struct Device {
    /// Control device of the module
    #[arg(long, value_name = "PATH", default_value_t = abi::device_path())]
    pub device: String,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Print one JSON object on one line instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the module's ABI version, limits and KVM vendor backend
    Version {
        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// Attach the module to a VM and print its vm id
    #[command(
        long_about = "Attach the module to a KVM VM and print its vm id.\n\n\
            With --pid, the VM descriptor (a descriptor whose /proc link reads \
            \"anon_inode:kvm-vm\") is found in /proc/PID/fd and copied with \
            pidfd_getfd(2); if the process has several VMs, --fd picks one. \
            With --vm-fd, a descriptor this command inherited is used.\n\n\
            Without --persistent the attachment lasts as long as this command: \
            it prints the vm id, then waits until SIGINT or SIGTERM (exit 0, \
            detaching the VM) or until the VM is detached by other means \
            (exit 0). With --persistent it prints the vm id and exits; the VM \
            stays attached until `kvm-pfi detach`, the VMM's exit or module unload.",
        group(ArgGroup::new("source").required(true).args(["pid", "vm_fd"]))
    )]
    Attach {
        /// PID of the VMM (e.g. QEMU) whose VM to attach
        #[arg(long, value_name = "PID", value_parser = clap::value_parser!(i32).range(1..))]
        pid: Option<i32>,

        /// Which of the VMM's VM descriptors, if it has several
        #[arg(long, value_name = "N", requires = "pid", conflicts_with = "vm_fd", value_parser = clap::value_parser!(i32).range(0..))]
        fd: Option<i32>,

        /// Attach the VM behind descriptor N of this process (inherited)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..))]
        vm_fd: Option<i32>,

        /// Keep the VM attached after this command exits
        #[arg(long)]
        persistent: bool,

        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// Detach an attached VM
    Detach {
        /// vm id, as printed by attach or list
        #[arg(long, value_name = "ID")]
        vm: u32,

        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// List the attached VMs
    List {
        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// Show vCPU entry/exit counters of attached VMs
    Stats {
        /// Only this VM (default: all attached VMs)
        #[arg(long, value_name = "ID")]
        vm: Option<u32>,

        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// Print the module's events as they happen, one JSON object per line
    #[command(
        long_about = "Print the module's events as they happen: one JSON object \
        per line on stdout, flushed at once, e.g.\n\n  \
        {\"event\":\"vm-attached\",\"vm_id\":1,\"vmm_pid\":123,\"stats_id\":\"kvm-123\",\"attach_flags\":0,\"time_ns\":...}\n\n\
        \"event\" is the netlink operation name, the other keys are its attributes \
        (with '-' as '_'), time_ns is CLOCK_REALTIME at reception. \
        {\"event\":\"overrun\"} means events were lost. If the module is not \
        loaded, or is unloaded, watch waits for it to come back.\n\n\
        Needs CAP_SYS_ADMIN."
    )]
    Watch {
        /// Print a human-readable line per event instead of JSON
        #[arg(long)]
        pretty: bool,

        /// Exit (status 0) after N events
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,

        /// Stop after SECS seconds: status 1 if --count was not reached, else 0
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        timeout: Option<Duration>,

        /// Create this file once subscribed, so scripts know events will be seen
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
    },
}

/// Positive, finite seconds, fractions allowed ("0.5").
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("`{s}` must be a positive number of seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kvm-pfi").chain(args.iter().copied()))
    }

    fn usage_error(args: &[&str]) -> ErrorKind {
        let err = parse(args).expect_err("should be rejected");
        // clap exits with 2 for every usage error (help/version print and exit 0).
        assert_eq!(err.exit_code(), 2, "{err}");
        err.kind()
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn attach_needs_exactly_one_source() {
        assert_eq!(usage_error(&["attach"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            usage_error(&["attach", "--pid", "1", "--vm-fd", "3"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            usage_error(&["attach", "--vm-fd", "3", "--fd", "4"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            usage_error(&["attach", "--fd", "4"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            usage_error(&["attach", "--pid", "0"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            usage_error(&["attach", "--pid", "-5"]),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            usage_error(&["attach", "--vm-fd", "x"]),
            ErrorKind::ValueValidation
        );

        let cli = parse(&[
            "attach",
            "--pid",
            "42",
            "--fd",
            "7",
            "--persistent",
            "--json",
        ])
        .unwrap();
        let Command::Attach {
            pid,
            fd,
            vm_fd,
            persistent,
            out,
            ..
        } = cli.command
        else {
            panic!()
        };
        assert_eq!(
            (pid, fd, vm_fd, persistent, out.json),
            (Some(42), Some(7), None, true, true)
        );
        let cli = parse(&["attach", "--vm-fd", "3"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Attach {
                vm_fd: Some(3),
                persistent: false,
                ..
            }
        ));
    }

    #[test]
    fn vm_ids_and_options() {
        assert_eq!(usage_error(&["detach"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            usage_error(&["detach", "--vm", "-1"]),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            usage_error(&["stats", "--vm", "abc"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            usage_error(&["list", "--bogus"]),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            usage_error(&[]),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        assert!(matches!(
            parse(&["stats"]).unwrap().command,
            Command::Stats { vm: None, .. }
        ));
        assert!(matches!(
            parse(&["detach", "--vm", "3"]).unwrap().command,
            Command::Detach { vm: 3, .. }
        ));
        let Command::List { dev, .. } = parse(&["list", "--device", "/tmp/x"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!(dev.device, "/tmp/x");
        let Command::Version { dev, .. } = parse(&["version"]).unwrap().command else {
            panic!()
        };
        assert_eq!(dev.device, "/dev/kvm_pfi");
        assert_eq!(
            usage_error(&["watch", "--device", "/tmp/x"]),
            ErrorKind::UnknownArgument
        );
    }

    #[test]
    fn watch_options() {
        assert_eq!(
            usage_error(&["watch", "--count", "0"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            usage_error(&["watch", "--timeout", "0"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            usage_error(&["watch", "--timeout", "-1"]),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            usage_error(&["watch", "--timeout", "soon"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            usage_error(&["watch", "--timeout", "inf"]),
            ErrorKind::ValueValidation
        );
        let cli = parse(&[
            "watch",
            "--count",
            "2",
            "--timeout",
            "1.5",
            "--ready-file",
            "/tmp/r",
            "--pretty",
        ])
        .unwrap();
        let Command::Watch {
            pretty,
            count,
            timeout,
            ready_file,
        } = cli.command
        else {
            panic!()
        };
        assert!(pretty);
        assert_eq!(count, Some(2));
        assert_eq!(timeout, Some(Duration::from_millis(1500)));
        assert_eq!(ready_file, Some(PathBuf::from("/tmp/r")));
    }

    #[test]
    fn help_and_version_exit_zero() {
        for args in [
            &["--help"][..],
            &["--version"],
            &["watch", "--help"],
            &["attach", "-h"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 0, "{args:?}");
        }
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit status:"));
    }
}
