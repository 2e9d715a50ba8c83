// SPDX-License-Identifier: GPL-2.0
//! Command line: what the operator types, validated before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::abi;
use crate::formats::Format;

const AFTER_HELP: &str = "\
Exit status:
  0   success (`snapshot --yara` too, whether or not rules matched)
  1   operational error, reported on stderr as `kvm-pfi: <what>: <reason>`
  2   usage error
  3   `snapshot --yara --fail-on-match`: at least one rule matched
  65  bad data: a rule file that does not compile (reported as
      `kvm-pfi: FILE:LINE:COL: message`), a signature set the module refused,
      a malformed snapshot, a Linux profile that cannot be made, is malformed
      or does not fit the running kernel
  66  an input file (rules, compiled set, snapshot, profile, kernel files)
      does not exist or cannot be read
  69  the module is not loaded: no /dev/kvm_pfi (or --device)
  77  permission denied (EPERM/EACCES): not root or no CAP_SYS_ADMIN, no
      ptrace rights over the VMM, an unreadable file

Most commands need root (or CAP_SYS_ADMIN): /dev/kvm_pfi is root-only, taking
another process's VM descriptor needs ptrace rights over it, and joining the
event group needs CAP_SYS_ADMIN. `sigs compile`, `snapshot --from`,
`profile build` and `profile show` need neither the module nor privileges;
`profile walk` needs root for /proc/kcore, not the module.";

#[derive(Debug, Parser)]
#[command(
    name = "kvm-pfi",
    version,
    // --version is ours: it also asks the loaded module (commands::version_flag).
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    override_usage = "kvm-pfi <COMMAND>\n       kvm-pfi --version",
    arg_required_else_help = true,
    about = "Attach the kvm-pfi introspection module to KVM VMs and observe them",
    long_about = "Attach the kvm-pfi introspection module to KVM virtual machines, \
        list and detach them, read their vCPU entry/exit counters, manage the \
        guest memory targets whose pages the module brings in (and protects), \
        load the signature sets it scans them with, follow the module's \
        events, list the processes of Linux guests and their VMAs, and save \
        delivered pages to scan them with YARA rules.\n\n\
        Control goes through the ioctls of /dev/kvm_pfi; events come from the \
        \"kvm_pfi\" generic netlink family.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Print the tool's version and the loaded module's, and whether they differ
    #[arg(short = 'V', long, exclusive = true)]
    pub version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
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

    /// Add, remove and inspect the targets (guest virtual ranges) of a VM
    #[command(
        subcommand_required = true,
        arg_required_else_help = true,
        long_about = TARGET_ABOUT
    )]
    Target {
        #[command(subcommand)]
        cmd: TargetCommand,
    },

    /// List and remove the rules `target add --process/--pid` made
    #[command(subcommand_required = true, arg_required_else_help = true)]
    Rule {
        #[command(subcommand)]
        cmd: RuleCommand,
    },

    /// Load, inspect and clear the signature set the module scans pages with
    #[command(
        subcommand_required = true,
        arg_required_else_help = true,
        long_about = SIGS_ABOUT
    )]
    Sigs {
        #[command(subcommand)]
        cmd: SigsCommand,
    },

    /// Print the module's events as they happen (JSON lines, journald, syslog, OCSF)
    #[command(
        long_about = WATCH_ABOUT,
        mut_arg("count", |a| a.help("Exit (status 0) after N events"))
    )]
    Watch {
        /// Print a human-readable line per event instead of JSON
        #[arg(long, conflicts_with = "format")]
        pretty: bool,

        /// Output format: json lines, journal entries, RFC 5424 syslog, OCSF
        #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Json)]
        format: Format,

        /// With --format syslog: the local socket to send to
        #[arg(
            long,
            value_name = "PATH",
            default_value = "/dev/log",
            conflicts_with = "syslog_tcp"
        )]
        syslog_socket: String,

        /// With --format syslog: send over TCP to HOST:PORT instead
        #[arg(long, value_name = "HOST:PORT")]
        syslog_tcp: Option<String>,

        /// Read the events from FILE ("-": stdin), as `watch --format json`
        /// wrote them, instead of from the module
        #[arg(long, value_name = "FILE", conflicts_with_all = ["count", "timeout", "ready_file"])]
        replay: Option<PathBuf>,

        #[command(flatten)]
        follow: Follow,
    },

    /// Build, show, check and load Linux guest profiles (offsets and symbols of a guest kernel)
    #[command(
        subcommand_required = true,
        arg_required_else_help = true,
        long_about = PROFILE_ABOUT
    )]
    Profile {
        #[command(subcommand)]
        cmd: ProfileCommand,
    },

    /// List the processes of a Linux guest, as the module's walks find them
    #[command(long_about = PS_ABOUT)]
    Ps {
        /// vm id, as printed by attach or list
        #[arg(long, value_name = "ID")]
        vm: u32,

        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// List the VMAs of a process of a Linux guest, like /proc/PID/maps
    #[command(long_about = VMAS_ABOUT)]
    Vmas {
        /// vm id, as printed by attach or list
        #[arg(long, value_name = "ID")]
        vm: u32,

        /// The process (its tgid, as `kvm-pfi ps` lists it)
        #[arg(long, value_name = "PID", value_parser = clap::value_parser!(i32).range(0..))]
        pid: i32,

        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// Write man pages or shell completions generated from this CLI
    #[command(subcommand_required = true, arg_required_else_help = true)]
    Generate {
        #[command(subcommand)]
        what: GenerateCommand,
    },

    /// Save delivered page contents to a directory, and scan them with YARA rules
    #[command(
        long_about = SNAPSHOT_ABOUT,
        mut_arg("count", |a| a.help("Stop (status 0) after saving N pages"))
    )]
    Snapshot {
        /// Directory to save the pages and index.jsonl in (created if needed;
        /// must not hold an index.jsonl yet)
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present = "from",
            conflicts_with = "from"
        )]
        out: Option<PathBuf>,

        #[command(flatten)]
        follow: Follow,

        /// Rescan the snapshot saved in DIR instead of following events
        /// (needs --yara; no module, no privileges)
        #[arg(
            long,
            value_name = "DIR",
            requires = "yara",
            conflicts_with_all = ["count", "timeout", "ready_file"]
        )]
        from: Option<PathBuf>,

        /// Scan each saved page, and each run of consecutive pages of a
        /// target, with these YARA rules; one JSON line per match
        #[arg(long, value_name = "RULES")]
        yara: Option<PathBuf>,

        /// Exit with status 3 if any rule matched (default: 0 either way)
        #[arg(long, requires = "yara")]
        fail_on_match: bool,
    },
}

/// How long `watch` and `snapshot` follow the event group.
#[derive(Debug, Clone, Default, Args)]
pub struct Follow {
    /// Exit (status 0) after N events
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Stop after SECS seconds: status 1 if --count was not reached, else 0
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub timeout: Option<Duration>,

    /// Create this file once subscribed, so scripts know events will be seen
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Man pages (kvm-pfi.1, kvm-pfi-watch.1, ...) into DIR
    Man {
        /// Directory to write the pages into (created if needed)
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// A completion script for SHELL on stdout
    Completions {
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

const WATCH_ABOUT: &str = "\
Print the module's events as they happen. By default one JSON object per \
line on stdout, flushed at once, e.g.\n\n  \
{\"event\":\"vm-attached\",\"vm_id\":1,\"vmm_pid\":123,\"stats_id\":\"kvm-123\",\"attach_flags\":0,\"time_ns\":...}\n  \
{\"event\":\"detection\",\"vm_id\":1,\"target_id\":2,\"cr3\":...,\"gva\":...,\"gpa\":...,\"offset\":52,\"length\":16,\"rule_id\":0,\"rule_name\":\"demo\",\"generation\":3,\"how\":\"injected\",\"injections\":1,\"time_ns\":...}\n\n\
\"event\" is the netlink operation name, the other keys are its attributes \
(with '-' as '_'), bytes (\"data\": page contents, the bytes of a write) \
in hex, time_ns is CLOCK_REALTIME at reception. \
{\"event\":\"overrun\"} means events were lost. With --pretty, one line \
per event for people: a detection shows the rule, vm, address, offset \
and whether kvm-pfi brought the page in.\n\n\
--format journald sends each event to the local systemd-journald (native \
protocol): MESSAGE is the --pretty sentence, MESSAGE_ID one fixed id per \
event type, PRIORITY its severity (detection 2, overrun 3, write-attempt \
and page-failed 4, attach/detach/sigs-loaded 5, the others 6), and every \
attribute is a KVM_PFI_<NAME> field. --format syslog sends RFC 5424 \
messages (facility daemon, APP-NAME kvm-pfi, MSGID the event name, the \
attributes as structured data [kvmpfi@32473 ...]) to --syslog-socket or \
--syslog-tcp. --format ocsf prints OCSF 1.5.0 events: Detection Finding \
(class 2004) for detection and write-attempt, Memory Activity (1004) for \
page-resident and page-failed, Process Activity (1007) for process-start \
and process-exit, Device Config State Change (5019) for the others; see \
Documentation/operations.rst.\n\n\
If the module is not loaded, or is unloaded, watch waits for it to come \
back. Needs CAP_SYS_ADMIN (not with --replay).";

const SIGS_ABOUT: &str = "\
Load, inspect and clear the module's signature set. The module scans every \
resident page of every target with the active set (again after each load, \
and after a tracked write) and reports a match as a `detection` event (see \
`kvm-pfi watch`).\n\n\
Rules are written in a subset of YARA:\n\n  \
rule demo {\n    strings:\n      $a = { 4D 5A ?? [2-4] 50 }\n      $b = \"text\"\n    condition:\n      any of them\n  }\n\n\
`sigs load FILE` compiles such a file and loads it, replacing the active set \
at once (a refused set leaves the active one in place); `sigs compile` writes \
the binary set instead, and `sigs load --compiled` loads one as is.";

const SNAPSHOT_ABOUT: &str = "\
Follow the module's events like `watch` and save the contents of each \
delivered page (page-resident events that carry data: targets added with \
`target add --read`) into --out DIR: one file per page, named \
vm<VM>-t<TARGET>-<GVA in 16 hex digits>.page (a page delivered again gets \
a -2, -3, ... suffix), and one line per page in DIR/index.jsonl:\n\n  \
{\"vm_id\":1,\"target_id\":2,\"cr3\":...,\"gva\":...,\"gpa\":...,\"how\":\"injected\",\"file\":\"vm1-t2-00007f0000001000.page\"}\n\n\
(`file` relative to DIR). Stops after --count pages or --timeout seconds.\n\n\
With --yara RULES, the rules are compiled with yara-x and each saved page is \
scanned as it arrives; when following stops, each run of consecutive pages \
of one target is scanned as one buffer, so that a match straddling two pages \
is found too (the latest copy of a page delivered more than once). Each \
match is one JSON line on stdout, reported once:\n\n  \
{\"rule\":\"demo\",\"pattern\":\"$a\",\"vm_id\":1,\"target_id\":2,\"gva\":...,\"offset\":4090,\"length\":12,\"file\":\"DIR/vm1-t2-00007f0000001000.page\"}\n\n\
gva is the address of the match's first byte, offset its offset in that page, \
file that page's file (a rule matching without strings: pattern null, the \
page's address, length 0). `snapshot --from DIR --yara RULES` rescans a \
saved snapshot offline. Matches do not change the exit status unless \
--fail-on-match is given (then 3).\n\n\
Following the events needs CAP_SYS_ADMIN.";

const PROFILE_ABOUT: &str = "\
A Linux guest profile holds what kvm-pfi needs to read a guest kernel's own \
structures (its task list, each mm and its VMA maple tree, file names): the \
offsets of a few dozen structure members, from the kernel's BTF, and the \
addresses of a few symbols, from its System.map or /proc/kallsyms. See \
Documentation/guest-linux.rst.\n\n\
`profile build` makes one from a kernel's files (no module, no privileges), \
`profile show` prints one, `profile walk` checks one against the kernel it \
runs on (root: it reads /proc/kcore) and prints every process and its VMAs, \
`profile load` gives one to the module for an attached VM whose guest runs \
that kernel (then `kvm-pfi ps` lists the guest's processes, `kvm-pfi vmas` \
the VMAs of one, and `watch` shows process-start and process-exit events). \
A profile that does not fit (init_task, plus the KASLR slide, is not pid 0 \
\"swapper/0\", its own parent, without an mm) is refused with status 65.";

const PROFILE_LOAD_ABOUT: &str = "\
Give attached VM ID the profile of its guest's Linux kernel (the text \
`profile build` writes; without PROFILE, one made from the guest's memory \
as `profile build --vm ID` makes it). The file is checked here first (a malformed one \
exits 65 with `kvm-pfi: FILE: ...`, before the module is asked); then the \
module checks it against the running guest, through the guest's page \
tables: init_task, at its profile address plus the KASLR slide, must be \
pid 0 \"swapper/0\", its own parent, without an mm, and the task list must \
come back to it. Without --slide the module tries every multiple of 2 MiB \
below 1 GiB (0 first). A profile that passes replaces the VM's previous one; \
from then on the module walks the guest's task list every second, `kvm-pfi \
ps` lists the processes it found and process-start / process-exit events \
report the changes.\n\n\
Prints the slide found (or given), the run-time address of init_task and the \
processes on the task list (\"vm 3: profile loaded: slide 0x1e00000, \
init_task 0xffffffff84612ac0, 57 processes\"; with --json \
{\"vm_id\":3,\"slide\":31457280,\"init_task\":18446744071635544768,\
\"nr_processes\":57}).\n\n\
A profile that does not fit the running guest exits 65 (`kvm-pfi: vm 3: \
profile does not fit the running guest ...`); the VM keeps its previous \
profile. The module needs a vCPU seen in 64-bit kernel mode: while it has \
seen none (the guest is not up yet) the load is retried for 10 seconds, \
then it fails (status 1).";

const PS_ABOUT: &str = "\
List the processes (thread-group leaders, init_task first, in task-list \
order) of a Linux guest as the module's last walk of its task list found \
them; the module walks it every second once `kvm-pfi profile load` gave \
the VM a profile. One line per process: PID, parent PID, address-space root \
(CR3: the guest physical address of mm->pgd; - for a kernel thread), comm, \
and the executable's path within its file system ([comm] for a kernel \
thread, - if unknown); then the number of walks, of walks that ended early \
and the last one's reason (bad-pointer, read, not-init-task, list-corrupt, \
too-many, other).\n\n\
With --json one object: {\"vm_id\":3,\"nr_processes\":57,\"walks\":120,\
\"walk_errors\":1,\"last_error\":\"list-corrupt\",\"walked_ns\":...,\
\"processes\":[{\"pid\":1,\"ppid\":0,\"cr3\":19087360,\"task\":...,\
\"mm\":...,\"flags\":4194560,\"comm\":\"init\",\"exe\":\"/sbin/init\"}]} \
(cr3 and mm 0 and exe \"\" for a kernel thread; last_error null if no walk \
failed; walked_ns: CLOCK_MONOTONIC of the walk). A VM without a profile \
fails (status 1): `kvm-pfi: VM 3 has no Linux profile (kvm-pfi profile load)`.";

const VMAS_ABOUT: &str = "\
List the VMAs of process PID of a Linux guest (one of the processes the \
module's last walk of the task list found, as `kvm-pfi ps` lists them; the \
VM needs a profile, `kvm-pfi profile load`), in address order, as the \
module reads them from the process's VMA tree when asked. A header line \
(\"vm 3 pid 57: cr3 0x5678000, 12 VMAs; code 0x400000-0x4a1000, brk \
0x1b5c000-0x1b7e000, stack 0x7ffd8a9c1e30\"), then one line per VMA as \
/proc/PID/maps has it, without the device and inode: start-end, \
permissions (r, w, x from VM_READ, VM_WRITE, VM_EXEC; s for VM_MAYSHARE, \
else p), the file offset (0 for an anonymous VMA), and the name: the \
file's path within its file system, [heap] for the anonymous VMA over \
[start_brk, brk), [stack] for the anonymous one holding start_stack, else \
nothing (a special mapping such as [vdso], having no file, has no name \
here).\n\n\
With --json one object: {\"vm_id\":3,\"pid\":57,\"cr3\":90669056,\
\"start_code\":4194304,\"end_code\":4853760,\"start_brk\":...,\"brk\":...,\
\"start_stack\":...,\"nr_vmas\":12,\"vmas\":[{\"start\":4194304,\
\"end\":4198400,\"flags\":113,\"pgoff\":0,\"perms\":\"r--p\",\
\"file\":\"/bin/busybox\",\"name\":\"/bin/busybox\"}]} (flags: the guest's \
vm_flags; pgoff: vm_pgoff, in pages; file \"\" for an anonymous VMA; name \
the file, \"[heap]\", \"[stack]\" or \"\").\n\n\
Each call walks the tree afresh; one that changed under the module's walks \
(EAGAIN) is asked again 3 times. Refusals (status 1): `kvm-pfi: VM 3 has \
no Linux profile (kvm-pfi profile load)`, `kvm-pfi: vm 3: no process with \
pid 999 (or a kernel thread)`, `kvm-pfi: vm 3: the VMAs of pid 57 changed \
under the walk; try again`, `kvm-pfi: vm 3 is not attached`.";

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Make a profile from a kernel's BTF and symbol table, or from a running guest
    #[command(
        long_about = "Make a profile from a kernel's BTF (--vmlinux: the .BTF section \
            of its ELF vmlinux; --btf: a raw blob such as /sys/kernel/btf/vmlinux, or \
            the one `pahole --btf_encode_detached=vmlinux.btf -J vmlinux` makes from \
            the DWARF of a kernel built without CONFIG_DEBUG_INFO_BTF) and its \
            symbol table (System.map, or /proc/kallsyms read as root).\n\n\
            With --vm (a running guest, through the module: only the VM's owner may \
            read its memory) or --kcore (the kernel an ELF core shows, /proc/kcore), \
            what is not given comes from the kernel's memory: the BTF from its image \
            (a kernel with CONFIG_DEBUG_INFO_BTF, as distributions build them), the \
            symbols from its own kallsyms tables (run-time addresses: the profile's \
            slide is 0; init_task needs CONFIG_KALLSYMS_ALL). `kvm-pfi profile build \
            --vm 3 -o guest.profile` thus needs nothing but the VM.\n\n\
            A member that is missing or of a type the walks cannot read, a missing \
            init_task or _text, no BTF or no kallsyms in memory, is refused with \
            status 65. Prints \"OUT: N fields, M symbols\" unless OUT is - (the \
            default: the profile on stdout).",
        group(ArgGroup::new("types").args(["vmlinux", "btf"])),
        group(ArgGroup::new("memory").args(["vm", "kcore"]))
    )]
    Build {
        /// ELF vmlinux with a .BTF section
        #[arg(long, value_name = "FILE", required_unless_present_any = ["btf", "vm", "kcore"])]
        vmlinux: Option<PathBuf>,

        /// Raw BTF blob (/sys/kernel/btf/vmlinux, or pahole's detached blob)
        #[arg(long, value_name = "FILE")]
        btf: Option<PathBuf>,

        /// System.map or /proc/kallsyms
        #[arg(long, value_name = "FILE", required_unless_present_any = ["vm", "kcore"])]
        system_map: Option<PathBuf>,

        /// Attached VM whose running guest kernel's memory gives what is not given
        #[arg(long, value_name = "ID")]
        vm: Option<u32>,

        /// ELF core of a kernel's memory (/proc/kcore) that gives what is not given
        #[arg(long, value_name = "PATH")]
        kcore: Option<PathBuf>,

        /// Where to write the profile; - for stdout
        #[arg(short, long, value_name = "OUT", default_value = "-")]
        output: PathBuf,

        #[command(flatten)]
        dev: Device,
    },

    /// Print the symbols of a kernel's own kallsyms tables, found in its memory
    #[command(long_about = "Find the kallsyms tables in the memory of a running guest \
        kernel (--vm, through the module) or of the kernel an ELF core shows \
        (--kcore, /proc/kcore) and print every symbol as /proc/kallsyms prints the \
        core kernel's: ADDRESS TYPE NAME, in address order. Tables that are not \
        found or do not decode exit with status 65.",
        group(ArgGroup::new("memory").required(true).args(["vm", "kcore"])))]
    Kallsyms {
        /// Attached VM
        #[arg(long, value_name = "ID")]
        vm: Option<u32>,

        /// ELF core of a kernel's memory
        #[arg(long, value_name = "PATH")]
        kcore: Option<PathBuf>,

        #[command(flatten)]
        dev: Device,
    },

    /// Print a profile (checked, in its normal form)
    Show {
        /// Profile file; - for stdin
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },

    /// Give an attached VM the profile of its guest kernel (the module checks it)
    #[command(long_about = PROFILE_LOAD_ABOUT)]
    Load {
        /// vm id, as printed by attach or list
        #[arg(long, value_name = "ID")]
        vm: u32,

        /// Profile file, as `profile build` writes it; - for stdin. Without
        /// it, the profile is made from the guest's memory (`profile build --vm`)
        #[arg(value_name = "PROFILE")]
        file: Option<PathBuf>,

        /// The guest kernel's KASLR slide, a multiple of 4096 (default: the module finds it)
        #[arg(long, value_name = "HEX", value_parser = parse_slide)]
        slide: Option<u64>,

        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// Walk the running kernel's processes and VMAs with a profile, through /proc/kcore
    #[command(long_about = "Walk the running kernel's memory through an ELF core \
        (/proc/kcore: its load segments map the direct map, vmalloc space and the \
        kernel image) with the profile: the task list from init_task, and each \
        process's mm, VMA maple tree and file names. The KASLR slide is where the \
        core maps the kernel image less the profile's _text (0 for a profile from \
        /proc/kallsyms), unless --slide is given. Prints each thread-group leader \
        (pid, comm, parent pid, executable) and each of its VMAs (start, end, \
        permissions as in /proc/PID/maps, file offset, path inside the file's own \
        file system); with --json one object: {\"kernel_text\":...,\"slide\":...,\
        \"init_task\":...,\"attempts\":1,\"processes\":[{\"pid\":1,\"tgid\":1,\
        \"comm\":\"init\",\"ppid\":0,\"task\":...,\"flags\":...,\"exe\":\"/sbin/init\",\
        \"mm\":{\"start_code\":...,...},\"vmas\":[{\"start\":...,\"end\":...,\"flags\":...,\
        \"pgoff\":...,\"file\":\"/sbin/init\"}],\"bad_entries\":0,\"error\":null}]}.\n\n\
        A profile that does not fit the running kernel exits with status 65. \
        Needs root (CAP_SYS_RAWIO) for /proc/kcore.")]
    Walk {
        /// Profile file; - for stdin
        #[arg(value_name = "FILE")]
        file: PathBuf,

        /// The kernel's memory as an ELF core
        #[arg(long, value_name = "PATH", default_value = "/proc/kcore")]
        kcore: PathBuf,

        /// KASLR slide to add to the profile's symbols instead of the one the core implies
        #[arg(long, value_name = "HEX", value_parser = parse_u64)]
        slide: Option<u64>,

        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum SigsCommand {
    /// Compile a rule file (or take a compiled set) and make it the active set
    #[command(
        long_about = "Compile a rule file (or take a compiled set) and make it the \
            module's active signature set. Prints the set's new generation and its \
            rule count (\"signature set loaded: generation 7, 3 rules\"; with \
            --json {\"generation\":7,\"nr_rules\":3}); the module announces it \
            with a sigs-loaded event.\n\n\
            A rule file that does not compile exits with status 65 and \
            `kvm-pfi: FILE:LINE:COL: message`, before the module is asked. A set \
            the module refuses exits with status 65 and the meaning of its errno, \
            e.g. `kvm-pfi: signature set refused: segment chain loops (ELOOP)`; \
            the active set stays as it was.",
        group(ArgGroup::new("input").required(true).args(["file", "compiled"]))
    )]
    Load {
        /// Rule file (YARA subset, see `kvm-pfi sigs --help`); - for stdin
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,

        /// Load this binary set as is, without checking it first (as
        /// written by `sigs compile`); - for stdin
        #[arg(long, value_name = "BLOB")]
        compiled: Option<PathBuf>,

        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// Compile a rule file into the module's binary set format (no module needed)
    #[command(long_about = "Compile a rule file into the module's binary signature \
        set format (struct kvm_pfi_sigs_header and what follows it, \
        include/uapi/linux/kvm_pfi.h), as `sigs load` would load it. Needs \
        neither the module nor privileges. Prints \"OUT: N rules, M bytes\" \
        unless OUT is - (stdout gets the set alone). A rule file that does not \
        compile exits with status 65 and `kvm-pfi: FILE:LINE:COL: message`.")]
    Compile {
        /// Rule file (YARA subset, see `kvm-pfi sigs --help`); - for stdin
        #[arg(value_name = "FILE")]
        file: PathBuf,

        /// Where to write the set; - for stdout
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
    },

    /// Show the active set and the scanning counters
    Info {
        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// Deactivate the signature set (no more scanning)
    Clear {
        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// List the rules of a VM, with the targets and pages they have
    #[command(visible_alias = "list")]
    Ls {
        /// vm id, as printed by attach or list
        #[arg(long, value_name = "ID")]
        vm: u32,

        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// Remove a rule and its targets
    #[command(visible_alias = "remove")]
    Rm {
        /// vm id, as printed by attach or list
        #[arg(long, value_name = "ID")]
        vm: u32,

        /// rule id, as printed by target add --process/--pid
        #[arg(long, value_name = "ID")]
        rule: u32,

        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },
}

const TARGET_ABOUT: &str = "\
Add, remove and inspect the targets of an attached VM: guest virtual ranges \
in one guest address space (CR3) whose pages the module reports when resident \
and brings back by injecting #PFs when swapped out.\n\n\
Targets belong to the VM's attachment. A VM attached without --persistent is \
detached, and its targets removed, when that `kvm-pfi attach` process exits; \
to use targets from the command line, attach with `kvm-pfi attach --persistent` \
(then `kvm-pfi detach` ends the attachment and its targets). Only the attaching \
file may change a VM: for a persistent attachment, `target add`, `target rm` and \
`detach` first present the VM's descriptor again, taken from its VMM.";

#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// Add a target and print its target id
    #[command(long_about = TARGET_ADD_ABOUT)]
    Add {
        #[command(flatten)]
        spec: TargetSpec,

        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// Remove a target
    #[command(visible_alias = "remove")]
    Rm {
        /// vm id, as printed by attach or list
        #[arg(long, value_name = "ID")]
        vm: u32,

        /// target id, as printed by target add or target ls
        #[arg(long, value_name = "ID")]
        target: u32,

        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// List the targets of a VM
    #[command(visible_alias = "list")]
    Ls {
        /// vm id, as printed by attach or list
        #[arg(long, value_name = "ID")]
        vm: u32,

        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },

    /// Show the state of each page of a target
    Pages {
        /// vm id, as printed by attach or list
        #[arg(long, value_name = "ID")]
        vm: u32,

        /// target id, as printed by target add or target ls
        #[arg(long, value_name = "ID")]
        target: u32,

        #[command(flatten)]
        out: Output,

        #[command(flatten)]
        dev: Device,
    },
}

const TARGET_ADD_ABOUT: &str = "\
Add a target to an attached VM and print its target id.\n\n\
--gva and --len must be multiples of 4096 (1 to 512 pages); numbers are \
decimal or hex with a 0x prefix. The module checks the range and the limits \
(EINVAL, E2BIG, ENOSPC, ...).\n\n\
--protect write-tracks the target's resident pages: each guest write is \
reported as a write-attempt event (offset, length, the bytes written). \
--enforce implies --protect and also restores the page's old bytes after \
each write (the event says `restored`); the module keeps a copy of each \
page, so an enforced target has at most 64 pages (E2BIG beyond).\n\n\
A user-half page gets a fault only where the guest would serve it: on a VM \
with a Linux profile (`kvm-pfi profile load`), once the module has found \
the process whose tables --cr3 names, and only if a VMA of that process \
covers the page and allows the access; other pages fail (no-vma, \
vma-denies). Without a profile, user pages wait unless --no-vma-check \
waives the check, at the task's risk.\n\n\
With --process NAME or --pid P and --region instead of a range, the module \
keeps a rule (print: its rule id): after each walk of the guest's task list \
(every second) it reads the VMAs of every process the rule names, those \
started later included, and keeps targets over the region's pages, following \
the region as it grows, moves or goes (`kvm-pfi rule ls`, `kvm-pfi rule rm`). \
Regions: exe (the executable's mappings), stack, heap, anon (anonymous \
mappings but heap and stack), all, file:PATTERN (mapped files whose path \
matches the glob, e.g. 'file:*/libc.so*'). Only --read, --write, --kpti, \
--protect and --enforce apply to a rule's targets; the VM needs a Linux \
profile (ENODATA).\n\n\
The VM must stay attached for the target to live: attach it with \
`kvm-pfi attach --persistent`. A target added to a VM attached without \
--persistent disappears when that `kvm-pfi attach` process exits.";

/// KVM_PFI_TARGET_ADD's input.
#[derive(Debug, Clone, Args)]
pub struct TargetSpec {
    /// vm id, as printed by attach or list
    #[arg(long, value_name = "ID")]
    pub vm: u32,

    /// Guest CR3 of the address space (PCID and flag bits are ignored)
    #[arg(long, value_name = "HEX", value_parser = parse_u64,
          required_unless_present_any = ["process", "pid"], conflicts_with_all = ["process", "pid"])]
    pub cr3: Option<u64>,

    /// First guest virtual address, page aligned
    #[arg(long, value_name = "HEX", value_parser = parse_u64,
          required_unless_present_any = ["process", "pid"], conflicts_with_all = ["process", "pid"])]
    pub gva: Option<u64>,

    /// Length in bytes, a multiple of 4096
    #[arg(long, value_name = "BYTES", value_parser = parse_u64,
          required_unless_present_any = ["process", "pid"], conflicts_with_all = ["process", "pid"])]
    pub len: Option<u64>,

    /// Instead of a range: a rule for the processes of this name (comm, or
    /// the executable's file name), those started later included (needs a
    /// Linux profile)
    #[arg(long, value_name = "NAME", conflicts_with = "pid", requires = "region", value_parser = parse_process_name)]
    pub process: Option<String>,

    /// Instead of a range: a rule for the process with this pid
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(i32).range(1..), requires = "region")]
    pub pid: Option<i32>,

    /// With --process or --pid: exe, stack, heap, anon, all, or
    /// file:PATTERN (a glob over the mapped file's path)
    #[arg(long, value_name = "REGION", value_parser = parse_region, conflicts_with_all = ["cr3", "gva", "len"])]
    pub region: Option<RegionArg>,

    /// May inject at CPL 0 too (needed for kernel-half ranges)
    #[arg(long)]
    pub kernel: bool,

    /// Send the page contents with each page-resident event
    #[arg(long)]
    pub read: bool,

    /// Inject write faults (e.g. to break copy-on-write)
    #[arg(long)]
    pub write: bool,

    /// The guest uses Linux PTI: cr3 and cr3 ^ 4 KiB are one address space
    #[arg(long)]
    pub kpti: bool,

    /// Write-track the resident pages: each guest write to them is a
    /// write-attempt event (with the bytes written)
    #[arg(long)]
    pub protect: bool,

    // Help built at run time: it names KVM_PFI_MAX_ENFORCE_PAGES.
    #[arg(long, help = enforce_help())]
    pub enforce: bool,

    /// Inject user-mode faults without checking the guest's VMAs (needed
    /// on a VM without a Linux profile). RISK: a fault at an address the
    /// guest OS does not consider mapped and accessible makes it kill the
    /// task (SIGSEGV)
    #[arg(long)]
    pub no_vma_check: bool,

    /// Re-inject after this many ms without the page (default: module parameter)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub timeout_ms: Option<u32>,

    /// #PFs per page before it fails (default: module parameter)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tries: Option<u32>,
}

impl TargetSpec {
    /// KVM_PFI_TARGET_* bits of the flag options.
    pub fn flags(&self) -> u32 {
        [
            (self.kernel, abi::KVM_PFI_TARGET_KERNEL),
            (self.read, abi::KVM_PFI_TARGET_READ),
            (self.write, abi::KVM_PFI_TARGET_WRITE),
            (self.kpti, abi::KVM_PFI_TARGET_KPTI),
            (self.protect, abi::KVM_PFI_TARGET_PROTECT),
            (self.no_vma_check, abi::KVM_PFI_TARGET_NO_VMA_CHECK),
            // The module wants PROTECT with ENFORCE: --enforce implies it.
            (
                self.enforce,
                abi::KVM_PFI_TARGET_PROTECT | abi::KVM_PFI_TARGET_ENFORCE,
            ),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | bit)
    }
}

fn enforce_help() -> String {
    format!(
        "Like --protect, and put the page's old bytes back after each guest write \
         (implies --protect; at most {} pages)",
        abi::KVM_PFI_MAX_ENFORCE_PAGES
    )
}

/// `--region`: a region of a process (enum kvm_pfi_region) and, for
/// `file:`, its pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionArg {
    pub region: u32,
    pub pattern: String,
}

/// `--process`'s value: 1 to KVM_PFI_RULE_NAME_LEN - 1 bytes, no NUL.
pub fn parse_process_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() >= abi::KVM_PFI_RULE_NAME_LEN as usize || s.contains('\0') {
        return Err(format!("a name of 1 to {} bytes", abi::KVM_PFI_RULE_NAME_LEN - 1));
    }
    Ok(s.to_string())
}

/// `--region`'s value.
pub fn parse_region(s: &str) -> Result<RegionArg, String> {
    let plain = |region| Ok(RegionArg { region, pattern: String::new() });
    match s {
        "exe" => plain(abi::KVM_PFI_REGION_EXE),
        "stack" => plain(abi::KVM_PFI_REGION_STACK),
        "heap" => plain(abi::KVM_PFI_REGION_HEAP),
        "anon" => plain(abi::KVM_PFI_REGION_ANON),
        "all" => plain(abi::KVM_PFI_REGION_ALL),
        _ => match s.strip_prefix("file:") {
            Some(p) if !p.is_empty() && p.len() < abi::KVM_PFI_RULE_NAME_LEN as usize && !p.contains('\0') => {
                Ok(RegionArg { region: abi::KVM_PFI_REGION_FILE, pattern: p.to_string() })
            }
            Some(_) => Err(format!(
                "file:PATTERN needs a pattern of 1 to {} bytes",
                abi::KVM_PFI_RULE_NAME_LEN - 1
            )),
            None => Err("one of exe, stack, heap, anon, all, file:PATTERN".to_string()),
        },
    }
}

/// An unsigned 64-bit number: decimal, or hex with a 0x/0X prefix.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    // Checked here because from_str_radix would accept a sign ("0x+1").
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!("`{s}` is not a decimal or 0x-prefixed hex number"));
    }
    u64::from_str_radix(digits, radix).map_err(|_| format!("`{s}` does not fit in 64 bits"))
}

/// A KASLR slide for `profile load`: a number (as `parse_u64`) that is a
/// multiple of 4096, as the module requires.
fn parse_slide(s: &str) -> Result<u64, String> {
    let v = parse_u64(s)?;
    if v % 4096 != 0 {
        return Err(format!("`{s}` is not a multiple of 4096"));
    }
    Ok(v)
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

    /// A parsed command line that names a subcommand.
    #[derive(Debug)]
    struct Parsed {
        command: Command,
    }

    fn parse(args: &[&str]) -> Result<Parsed, clap::Error> {
        Cli::try_parse_from(std::iter::once("kvm-pfi").chain(args.iter().copied())).map(|c| {
            Parsed {
                command: c.command.expect("these tests name a subcommand"),
            }
        })
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
        let Command::Watch { pretty, follow, .. } = cli.command else {
            panic!()
        };
        assert!(pretty);
        assert_eq!(follow.count, Some(2));
        assert_eq!(follow.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(follow.ready_file, Some(PathBuf::from("/tmp/r")));
    }

    #[test]
    fn watch_formats_and_targets() {
        let watch = |args: &[&str]| {
            let all: Vec<&str> = std::iter::once("watch")
                .chain(args.iter().copied())
                .collect();
            let Command::Watch {
                format,
                syslog_socket,
                syslog_tcp,
                replay,
                ..
            } = parse(&all).unwrap().command
            else {
                panic!()
            };
            (format, syslog_socket, syslog_tcp, replay)
        };
        assert_eq!(watch(&[]).0, Format::Json);
        assert_eq!(watch(&[]).1, "/dev/log");
        assert_eq!(watch(&["--format", "journald"]).0, Format::Journald);
        assert_eq!(watch(&["--format", "ocsf"]).0, Format::Ocsf);
        let (f, _, tcp, _) = watch(&["--format", "syslog", "--syslog-tcp", "siem:6514"]);
        assert_eq!((f, tcp.as_deref()), (Format::Syslog, Some("siem:6514")));
        let (_, _, _, replay) = watch(&["--format", "ocsf", "--replay", "-"]);
        assert_eq!(replay, Some(PathBuf::from("-")));
        assert_eq!(
            usage_error(&["watch", "--format", "xml"]),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            usage_error(&["watch", "--format", "json", "--pretty"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            usage_error(&["watch", "--syslog-socket", "/a", "--syslog-tcp", "h:1"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            usage_error(&["watch", "--replay", "f", "--count", "1"]),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn version_flag_is_ours() {
        let cli = Cli::try_parse_from(["kvm-pfi", "--version"]).unwrap();
        assert!(cli.version && cli.command.is_none());
        let cli = Cli::try_parse_from(["kvm-pfi", "-V"]).unwrap();
        assert!(cli.version);
        assert_eq!(
            usage_error(&["--version", "list"]),
            ErrorKind::ArgumentConflict
        );
        let err = Cli::try_parse_from(["kvm-pfi"]).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }

    #[test]
    fn numbers_in_hex_or_decimal() {
        assert_eq!(parse_u64("0"), Ok(0));
        assert_eq!(parse_u64("4096"), Ok(4096));
        assert_eq!(parse_u64("0x1000"), Ok(4096));
        assert_eq!(parse_u64("0X7fFF0000"), Ok(0x7fff_0000));
        assert_eq!(parse_u64("0xffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(parse_u64("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "", "0x", "x10", "1000h", "0x10g", "12a", "-1", "+1", "0x+1", "0x-1", " 1", "1 ",
            "1_000", "0b101", "4k", "0x 1",
        ] {
            let err = parse_u64(bad).unwrap_err();
            assert!(err.contains("not a decimal"), "{bad:?}: {err}");
        }
        assert!(parse_u64("0x10000000000000000")
            .unwrap_err()
            .contains("64 bits"));
        assert!(parse_u64("18446744073709551616")
            .unwrap_err()
            .contains("64 bits"));
    }

    #[test]
    fn target_add_options() {
        let cli = parse(&[
            "target",
            "add",
            "--vm",
            "3",
            "--cr3",
            "0x1234000",
            "--gva",
            "0x7f0000000000",
            "--len",
            "8192",
            "--kernel",
            "--kpti",
            "--timeout-ms",
            "500",
            "--max-tries",
            "7",
            "--json",
            "--device",
            "/tmp/d",
        ])
        .unwrap();
        let Command::Target {
            cmd: TargetCommand::Add { spec, out, dev },
        } = cli.command
        else {
            panic!()
        };
        assert_eq!(
            (spec.vm, spec.cr3, spec.gva, spec.len),
            (3, Some(0x1234000), Some(0x7f00_0000_0000), Some(8192))
        );
        assert_eq!((spec.timeout_ms, spec.max_tries), (Some(500), Some(7)));
        assert_eq!(
            spec.flags(),
            abi::KVM_PFI_TARGET_KERNEL | abi::KVM_PFI_TARGET_KPTI
        );
        assert!(out.json);
        assert_eq!(dev.device, "/tmp/d");

        let cli = parse(&[
            "target", "add", "--vm", "1", "--cr3", "4096", "--gva", "0", "--len", "0x1000",
            "--read", "--write",
        ])
        .unwrap();
        let Command::Target {
            cmd: TargetCommand::Add { spec, out, dev },
        } = cli.command
        else {
            panic!()
        };
        assert_eq!((spec.cr3, spec.gva, spec.len), (Some(4096), Some(0), Some(4096)));
        assert_eq!((spec.timeout_ms, spec.max_tries), (None, None));
        assert_eq!(
            spec.flags(),
            abi::KVM_PFI_TARGET_READ | abi::KVM_PFI_TARGET_WRITE
        );
        assert!(!out.json);
        assert_eq!(dev.device, "/dev/kvm_pfi");

        let base = [
            "target", "add", "--vm", "1", "--cr3", "0x1000", "--gva", "0x1000",
        ];
        let with = |extra: &[&'static str]| -> Vec<&'static str> {
            base.iter().chain(extra).copied().collect()
        };
        assert_eq!(usage_error(&with(&[])), ErrorKind::MissingRequiredArgument);
        for garbage in ["4k", "0x", "ten", "1.5", "0x1g"] {
            assert_eq!(
                usage_error(&with(&["--len", garbage])),
                ErrorKind::ValueValidation,
                "{garbage}"
            );
        }
        assert_eq!(
            usage_error(&with(&["--len", "-4096"])),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            usage_error(&with(&["--len", "4096", "--timeout-ms", "0"])),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            usage_error(&with(&["--len", "4096", "--max-tries", "x"])),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            usage_error(&with(&["--len", "4096", "--user"])),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            usage_error(&[
                "target", "add", "--vm", "0x1", "--cr3", "1", "--gva", "0", "--len", "1"
            ]),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn target_rm_ls_pages_options() {
        assert!(matches!(
            parse(&["target", "rm", "--vm", "2", "--target", "5"])
                .unwrap()
                .command,
            Command::Target {
                cmd: TargetCommand::Rm {
                    vm: 2,
                    target: 5,
                    ..
                }
            }
        ));
        assert!(matches!(
            parse(&["target", "ls", "--vm", "2", "--json"])
                .unwrap()
                .command,
            Command::Target {
                cmd: TargetCommand::Ls {
                    vm: 2,
                    out: Output { json: true },
                    ..
                }
            }
        ));
        assert!(matches!(
            parse(&["target", "pages", "--vm", "2", "--target", "9"])
                .unwrap()
                .command,
            Command::Target {
                cmd: TargetCommand::Pages {
                    vm: 2,
                    target: 9,
                    out: Output { json: false },
                    ..
                }
            }
        ));
        assert_eq!(
            usage_error(&["target", "rm", "--vm", "2"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            usage_error(&["target", "pages", "--target", "1"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            usage_error(&["target", "ls", "--vm", "x"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            usage_error(&["target", "frob"]),
            ErrorKind::InvalidSubcommand
        );
        assert_eq!(
            usage_error(&["target"]),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }

    #[test]
    fn target_help_points_at_persistent_attach() {
        let mut cmd = Cli::command();
        let target = cmd.find_subcommand_mut("target").unwrap();
        let help = target.render_long_help().to_string();
        assert!(help.contains("attach --persistent"), "{help}");
        let add = target.find_subcommand_mut("add").unwrap();
        let help = add.render_long_help().to_string();
        assert!(help.contains("attach --persistent"), "{help}");
    }

    #[test]
    fn help_and_version_exit_zero() {
        for args in [
            &["--help"][..],
            &["watch", "--help"],
            &["attach", "-h"],
            &["target", "add", "--help"],
            &["sigs", "--help"],
            &["sigs", "load", "--help"],
            &["snapshot", "--help"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 0, "{args:?}");
        }
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit status:"));
    }

    /// The table in --help is the one main() applies (error::exit).
    #[test]
    fn exit_status_table_in_help() {
        use crate::error::exit;
        let help = Cli::command().render_long_help().to_string();
        let table = &help[help.find("Exit status:").unwrap()..];
        for code in [
            exit::OK,
            exit::FAILURE,
            exit::USAGE,
            exit::MATCHED,
            exit::DATAERR,
            exit::NOINPUT,
            exit::UNAVAILABLE,
            exit::NOPERM,
        ] {
            assert!(
                table
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{code} "))),
                "status {code} missing from:\n{table}"
            );
        }
        assert!(table.contains("FILE:LINE:COL"), "{table}");
        // clap's own usage errors give the 2 of the table.
        assert_eq!(
            parse(&["sigs", "load"]).unwrap_err().exit_code(),
            exit::USAGE as i32
        );
    }

    #[test]
    fn target_add_protect_and_enforce() {
        let base = [
            "target", "add", "--vm", "1", "--cr3", "0x1000", "--gva", "0x1000", "--len", "4096",
        ];
        let flags = |extra: &[&str]| -> u32 {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            let Command::Target {
                cmd: TargetCommand::Add { spec, .. },
            } = parse(&args).unwrap().command
            else {
                panic!()
            };
            spec.flags()
        };
        assert_eq!(flags(&[]), 0);
        assert_eq!(flags(&["--protect"]), abi::KVM_PFI_TARGET_PROTECT);
        // --enforce implies --protect: the module refuses ENFORCE alone.
        let both = abi::KVM_PFI_TARGET_PROTECT | abi::KVM_PFI_TARGET_ENFORCE;
        assert_eq!(flags(&["--enforce"]), both);
        assert_eq!(flags(&["--protect", "--enforce"]), both);
        assert_eq!(
            flags(&["--read", "--enforce"]),
            both | abi::KVM_PFI_TARGET_READ
        );
        // Every flag the ABI knows can be asked for.
        assert_eq!(
            flags(&["--kernel", "--read", "--write", "--kpti", "--enforce", "--no-vma-check"]),
            abi::KVM_PFI_TARGET_FLAGS_ALL
        );

        let mut cmd = Cli::command();
        let add = cmd
            .find_subcommand_mut("target")
            .unwrap()
            .find_subcommand_mut("add")
            .unwrap();
        let help = add.render_long_help().to_string();
        let limit = format!("at most {} pages", abi::KVM_PFI_MAX_ENFORCE_PAGES);
        assert!(help.contains("implies --protect"), "{help}");
        assert!(help.contains(&limit), "{help}");
        assert_eq!(help.matches(&limit).count(), 2, "{help}");
    }

    #[test]
    fn sigs_options() {
        let Command::Sigs {
            cmd:
                SigsCommand::Load {
                    file,
                    compiled,
                    out,
                    dev,
                },
        } = parse(&["sigs", "load", "rules.txt", "--json"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(file, Some(PathBuf::from("rules.txt")));
        assert_eq!(compiled, None);
        assert!(out.json);
        assert_eq!(dev.device, "/dev/kvm_pfi");

        let Command::Sigs {
            cmd: SigsCommand::Load { file, compiled, .. },
        } = parse(&[
            "sigs",
            "load",
            "--compiled",
            "set.bin",
            "--device",
            "/tmp/d",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!((file, compiled), (None, Some(PathBuf::from("set.bin"))));

        assert_eq!(
            usage_error(&["sigs", "load"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            usage_error(&["sigs", "load", "a.txt", "--compiled", "b.bin"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            usage_error(&["sigs", "load", "a.txt", "b.txt"]),
            ErrorKind::UnknownArgument
        );

        let Command::Sigs {
            cmd: SigsCommand::Compile { file, output },
        } = parse(&["sigs", "compile", "r.txt", "-o", "-"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!((file, output), (PathBuf::from("r.txt"), PathBuf::from("-")));
        assert!(matches!(
            parse(&["sigs", "compile", "r.txt", "--output", "set.bin"])
                .unwrap()
                .command,
            Command::Sigs {
                cmd: SigsCommand::Compile { .. }
            }
        ));
        assert_eq!(
            usage_error(&["sigs", "compile", "r.txt"]),
            ErrorKind::MissingRequiredArgument
        );
        // compile needs no device: it has no --device.
        assert_eq!(
            usage_error(&["sigs", "compile", "r.txt", "-o", "x", "--device", "/d"]),
            ErrorKind::UnknownArgument
        );

        assert!(matches!(
            parse(&["sigs", "info", "--json"]).unwrap().command,
            Command::Sigs {
                cmd: SigsCommand::Info {
                    out: Output { json: true },
                    ..
                }
            }
        ));
        assert!(matches!(
            parse(&["sigs", "clear"]).unwrap().command,
            Command::Sigs {
                cmd: SigsCommand::Clear {
                    out: Output { json: false },
                    ..
                }
            }
        ));
        assert_eq!(
            usage_error(&["sigs"]),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        assert_eq!(usage_error(&["sigs", "frob"]), ErrorKind::InvalidSubcommand);
    }

    #[test]
    fn profile_options() {
        let Command::Profile {
            cmd:
                ProfileCommand::Build {
                    vmlinux,
                    btf,
                    system_map,
                    output,
                    ..
                },
        } = parse(&["profile", "build", "--btf", "b", "--system-map", "m"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(
            (vmlinux, btf, system_map, output),
            (
                None,
                Some(PathBuf::from("b")),
                Some(PathBuf::from("m")),
                PathBuf::from("-")
            )
        );
        // From a guest's memory: nothing else needed; files still win.
        for args in [
            &["profile", "build", "--vm", "3"][..],
            &["profile", "build", "--kcore", "/proc/kcore", "--btf", "b"],
            &["profile", "build", "--vm", "3", "--system-map", "m"],
        ] {
            assert!(matches!(
                parse(args).unwrap().command,
                Command::Profile {
                    cmd: ProfileCommand::Build { .. }
                }
            ));
        }
        assert_eq!(
            usage_error(&["profile", "build", "--vm", "3", "--kcore", "k"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            usage_error(&["profile", "kallsyms"]),
            ErrorKind::MissingRequiredArgument
        );
        assert!(matches!(
            parse(&["profile", "kallsyms", "--kcore", "/proc/kcore"]).unwrap().command,
            Command::Profile {
                cmd: ProfileCommand::Kallsyms { vm: None, kcore: Some(_), .. }
            }
        ));
        assert!(matches!(
            parse(&["profile", "load", "--vm", "2"]).unwrap().command,
            Command::Profile {
                cmd: ProfileCommand::Load { vm: 2, file: None, .. }
            }
        ));
        assert!(matches!(
            parse(&[
                "profile",
                "build",
                "--vmlinux",
                "v",
                "--system-map",
                "m",
                "-o",
                "p"
            ])
            .unwrap()
            .command,
            Command::Profile {
                cmd: ProfileCommand::Build {
                    vmlinux: Some(_),
                    btf: None,
                    ..
                }
            }
        ));
        assert_eq!(
            usage_error(&["profile", "build", "--system-map", "m"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            usage_error(&["profile", "build", "--btf", "b"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            usage_error(&[
                "profile",
                "build",
                "--btf",
                "b",
                "--vmlinux",
                "v",
                "--system-map",
                "m"
            ]),
            ErrorKind::ArgumentConflict
        );
        let Command::Profile {
            cmd:
                ProfileCommand::Walk {
                    file,
                    kcore,
                    slide,
                    out,
                },
        } = parse(&["profile", "walk", "p"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!(
            (file, kcore, slide, out.json),
            (
                PathBuf::from("p"),
                PathBuf::from("/proc/kcore"),
                None,
                false
            )
        );
        let Command::Profile {
            cmd: ProfileCommand::Walk {
                kcore, slide, out, ..
            },
        } = parse(&[
            "profile", "walk", "p", "--kcore", "k", "--slide", "0x200000", "--json",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(
            (kcore, slide, out.json),
            (PathBuf::from("k"), Some(0x200000), true)
        );
        assert_eq!(
            usage_error(&["profile", "walk", "p", "--slide", "x"]),
            ErrorKind::ValueValidation
        );
        assert!(matches!(
            parse(&["profile", "show", "p"]).unwrap().command,
            Command::Profile {
                cmd: ProfileCommand::Show { .. }
            }
        ));
        assert_eq!(
            usage_error(&["profile"]),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }

    #[test]
    fn profile_load_and_ps_options() {
        let Command::Profile {
            cmd:
                ProfileCommand::Load {
                    vm,
                    file,
                    slide,
                    out,
                    dev,
                },
        } = parse(&["profile", "load", "--vm", "3", "guest.profile"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(
            (vm, file, slide, out.json, dev.device.as_str()),
            (
                3,
                Some(PathBuf::from("guest.profile")),
                None,
                false,
                "/dev/kvm_pfi"
            )
        );
        let Command::Profile {
            cmd: ProfileCommand::Load { slide, out, .. },
        } = parse(&[
            "profile",
            "load",
            "-",
            "--vm",
            "3",
            "--slide",
            "0x1e00000",
            "--json",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!((slide, out.json), (Some(0x1e0_0000), true));
        assert!(matches!(
            parse(&["profile", "load", "p", "--vm", "1", "--slide", "0"])
                .unwrap()
                .command,
            Command::Profile {
                cmd: ProfileCommand::Load { slide: Some(0), .. }
            }
        ));
        assert_eq!(
            usage_error(&["profile", "load", "p", "--vm", "1", "--slide", "0x200"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            usage_error(&["profile", "load", "p"]),
            ErrorKind::MissingRequiredArgument
        );

        assert!(matches!(
            parse(&["ps", "--vm", "2", "--json"]).unwrap().command,
            Command::Ps {
                vm: 2,
                out: Output { json: true },
                ..
            }
        ));
        assert_eq!(usage_error(&["ps"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            usage_error(&["ps", "--vm", "1", "extra"]),
            ErrorKind::UnknownArgument
        );
        let Command::Vmas { vm, pid, out, dev } = parse(&["vmas", "--vm", "2", "--pid", "57"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(
            (vm, pid, out.json, dev.device.as_str()),
            (2, 57, false, "/dev/kvm_pfi")
        );
        assert!(matches!(
            parse(&["vmas", "--pid", "0", "--json", "--vm", "1", "--device", "/x"])
                .unwrap()
                .command,
            Command::Vmas {
                vm: 1,
                pid: 0,
                out: Output { json: true },
                dev: Device { ref device },
            } if device == "/x"
        ));
        for args in [
            &["vmas", "--vm", "1"][..],
            &["vmas", "--pid", "1"],
            &["vmas"],
        ] {
            assert_eq!(usage_error(args), ErrorKind::MissingRequiredArgument);
        }
        assert_eq!(
            usage_error(&["vmas", "--vm", "1", "--pid=-1"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            usage_error(&["vmas", "--vm", "1", "--pid", "x"]),
            ErrorKind::ValueValidation
        );
        let help = Cli::command()
            .find_subcommand_mut("vmas")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            help.contains("[heap]") && help.contains("no process with") && help.contains("--pid"),
            "{help}"
        );
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("profile")
            .unwrap()
            .find_subcommand_mut("load")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("retried for 10 seconds"), "{help}");
        let help = Cli::command()
            .find_subcommand_mut("ps")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("has no Linux profile"), "{help}");
    }

    #[test]
    fn snapshot_options() {
        let Command::Snapshot {
            out,
            follow,
            from,
            yara,
            fail_on_match,
        } = parse(&[
            "snapshot",
            "--out",
            "/tmp/snap",
            "--count",
            "3",
            "--timeout",
            "2",
            "--ready-file",
            "/tmp/r",
            "--yara",
            "r.yar",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(out, Some(PathBuf::from("/tmp/snap")));
        assert_eq!(follow.count, Some(3));
        assert_eq!(follow.timeout, Some(Duration::from_secs(2)));
        assert_eq!(follow.ready_file, Some(PathBuf::from("/tmp/r")));
        assert_eq!(from, None);
        assert_eq!(yara, Some(PathBuf::from("r.yar")));
        assert!(!fail_on_match);

        let Command::Snapshot {
            out,
            from,
            yara,
            fail_on_match,
            ..
        } = parse(&[
            "snapshot",
            "--from",
            "/tmp/snap",
            "--yara",
            "r.yar",
            "--fail-on-match",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(
            (out, from, yara, fail_on_match),
            (
                None,
                Some(PathBuf::from("/tmp/snap")),
                Some(PathBuf::from("r.yar")),
                true
            )
        );

        // Without a yara scan there is nothing to do with --from.
        assert_eq!(
            usage_error(&["snapshot", "--from", "d"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            usage_error(&["snapshot"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            usage_error(&["snapshot", "--out", "a", "--from", "b", "--yara", "r"]),
            ErrorKind::ArgumentConflict
        );
        for follow_opt in [
            &["--count", "1"][..],
            &["--timeout", "1"],
            &["--ready-file", "x"],
        ] {
            let args: Vec<&str> = ["snapshot", "--from", "d", "--yara", "r"]
                .iter()
                .chain(follow_opt)
                .copied()
                .collect();
            assert_eq!(usage_error(&args), ErrorKind::ArgumentConflict, "{args:?}");
        }
        assert_eq!(
            usage_error(&["snapshot", "--out", "d", "--fail-on-match"]),
            ErrorKind::MissingRequiredArgument
        );
        // Same option parsing as watch.
        assert_eq!(
            usage_error(&["snapshot", "--out", "d", "--count", "0"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            usage_error(&["snapshot", "--out", "d", "--timeout", "inf"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            usage_error(&["snapshot", "--out", "d", "--pretty"]),
            ErrorKind::UnknownArgument
        );

        // --count's help names what it counts.
        let mut cmd = Cli::command();
        let snap = cmd
            .find_subcommand_mut("snapshot")
            .unwrap()
            .render_help()
            .to_string();
        assert!(snap.contains("after saving N pages"), "{snap}");
        let mut cmd = Cli::command();
        let watch = cmd
            .find_subcommand_mut("watch")
            .unwrap()
            .render_help()
            .to_string();
        assert!(watch.contains("after N events"), "{watch}");
    }

    #[test]
    fn target_add_by_process_and_region() {
        let cli = parse(&["target", "add", "--vm", "2", "--process", "sleep", "--region", "file:*/libc.so*", "--read"])
            .unwrap();
        let Command::Target { cmd: TargetCommand::Add { spec, .. } } = cli.command else { panic!() };
        assert_eq!(spec.process.as_deref(), Some("sleep"));
        assert_eq!(
            spec.region,
            Some(RegionArg { region: abi::KVM_PFI_REGION_FILE, pattern: "*/libc.so*".into() })
        );
        assert_eq!((spec.cr3, spec.pid), (None, None));
        let cli = parse(&["target", "add", "--vm", "2", "--pid", "77", "--region", "stack"]).unwrap();
        let Command::Target { cmd: TargetCommand::Add { spec, .. } } = cli.command else { panic!() };
        assert_eq!((spec.pid, spec.region.map(|r| r.region)), (Some(77), Some(abi::KVM_PFI_REGION_STACK)));
        for bad in [
            &["target", "add", "--vm", "2", "--process", "x"][..],
            &["target", "add", "--vm", "2", "--region", "heap"],
            &["target", "add", "--vm", "2", "--pid", "0", "--region", "heap"],
            &["target", "add", "--vm", "2", "--pid", "3", "--process", "x", "--region", "heap"],
            &["target", "add", "--vm", "2", "--process", "x", "--region", "text"],
            &["target", "add", "--vm", "2", "--process", "x", "--region", "heap", "--gva", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let rm = parse(&["rule", "rm", "--vm", "2", "--rule", "5"]).unwrap();
        assert!(matches!(rm.command, Command::Rule { cmd: RuleCommand::Rm { vm: 2, rule: 5, .. } }));
    }
}
