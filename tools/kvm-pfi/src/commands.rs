// SPDX-License-Identifier: GPL-2.0
//! The subcommands: ioctls on /dev/kvm_pfi and their output.

use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use serde::Serialize;

use crate::abi;
use crate::cli::{
    Cli, Command, GenerateCommand, Output as OutputOpt, ProfileCommand, RuleCommand, SigsCommand, TargetCommand,
};
use crate::dev::{Device, VmInfo};
use crate::error::{Error, Result};
use crate::formats::{self, Format, Output, SyslogTarget};
use crate::kernel_image;
use crate::linux;
use crate::sigs;
use crate::snapshot;
use crate::targets;
use crate::vmfd;
use crate::watch;

pub fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        // clap lets no other option stand alone (arg_required_else_help).
        return version_flag(&abi::device_path());
    };
    match command {
        Command::Version { out, dev } => version(&dev.device, out),
        Command::List { out, dev } => list(&dev.device, out),
        Command::Stats { vm, out, dev } => stats(&dev.device, vm, out),
        Command::Detach { vm, out, dev } => detach(&dev.device, vm, out),
        Command::Attach {
            pid,
            fd,
            vm_fd,
            persistent,
            out,
            dev,
        } => attach(&dev.device, pid, fd, vm_fd, persistent, out),
        Command::Target { cmd } => target(cmd),
        Command::Rule { cmd } => rule(cmd),
        Command::Sigs { cmd } => sigs_command(cmd),
        Command::Profile { cmd } => profile_command(cmd),
        Command::Ps { vm, out, dev } => ps(&dev.device, vm, out),
        Command::Vmas { vm, pid, out, dev } => vmas(&dev.device, vm, pid, out),
        Command::Watch {
            pretty,
            format,
            syslog_socket,
            syslog_tcp,
            replay,
            follow,
        } => {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            let output = match format {
                Format::Json => Output::Lines {
                    out: &mut out,
                    pretty,
                },
                Format::Ocsf => Output::Ocsf {
                    out: &mut out,
                    hostname: formats::hostname(),
                },
                Format::Journald => {
                    formats::check_journal()?;
                    Output::Journald
                }
                Format::Syslog => {
                    Output::Syslog(Box::new(formats::Syslog::connect(match syslog_tcp {
                        Some(addr) => SyslogTarget::Tcp(addr),
                        None => SyslogTarget::Unix(syslog_socket),
                    })?))
                }
            };
            let mut printer = watch::Printer { output };
            if let Some(path) = replay {
                for record in formats::read_replay(&path)? {
                    printer.output.emit(&record, watch::realtime_ns())?;
                }
                return Ok(());
            }
            let mut transport = watch::NetlinkTransport::new()?;
            let mut note = |s: &str| eprintln!("kvm-pfi: {s}");
            let mut now = watch::realtime_ns;
            watch::run(
                &mut transport,
                &follow.into(),
                &mut printer,
                &mut watch::Io {
                    note: &mut note,
                    now_ns: &mut now,
                },
            )
        }
        Command::Generate { what } => generate(what),
        Command::Snapshot {
            out,
            follow,
            from,
            yara,
            fail_on_match,
        } => {
            let stdout = io::stdout();
            let mut matches_out = stdout.lock();
            let mut note = |s: &str| eprintln!("kvm-pfi: {s}");
            let matches = match (from, out) {
                (Some(dir), _) => {
                    let rules = yara.as_deref().expect("clap: --from requires --yara");
                    snapshot::rescan(&dir, rules, &mut matches_out)?
                }
                (None, Some(dir)) => {
                    let mut transport = watch::NetlinkTransport::new()?;
                    let mut now = watch::realtime_ns;
                    snapshot::follow(
                        &mut transport,
                        &dir,
                        yara.as_deref(),
                        &follow.into(),
                        &mut matches_out,
                        &mut watch::Io {
                            note: &mut note,
                            now_ns: &mut now,
                        },
                        // Progress for people only: never in a pipe or a file.
                        io::stdout().is_terminal(),
                    )?
                }
                (None, None) => unreachable!("clap requires --out or --from"),
            };
            if fail_on_match && matches > 0 {
                return Err(Error::Matched(matches));
            }
            Ok(())
        }
    }
}

fn sigs_command(cmd: SigsCommand) -> Result<()> {
    match cmd {
        SigsCommand::Load {
            file,
            compiled,
            out,
            dev,
        } => {
            // Compile (or read) first: a bad file needs no module.
            let set = match (file, compiled) {
                (Some(file), _) => sigs::compile_file(&file)?.blob,
                (None, Some(blob)) => sigs::read_input(&blob)?,
                (None, None) => unreachable!("clap requires FILE or --compiled"),
            };
            let l = Device::open(&dev.device)?
                .sigs_load(&set)
                .map_err(sigs::refused)?;
            let j = sigs::LoadedJson {
                generation: l.generation,
                nr_rules: l.nr_rules,
            };
            if out.json {
                json(&j)
            } else {
                say(&sigs::loaded_text(&j))
            }
        }
        SigsCommand::Compile { file, output } => {
            let c = sigs::compile_file(&file)?;
            sigs::write_output(&output, &c.blob)?;
            if output != std::path::Path::new("-") {
                say(&format!(
                    "{}: {} rule{}, {} bytes",
                    output.display(),
                    c.rules.len(),
                    if c.rules.len() == 1 { "" } else { "s" },
                    c.blob.len()
                ))?;
            }
            Ok(())
        }
        SigsCommand::Info { out, dev } => {
            let i = Device::open(&dev.device)?.sigs_info()?;
            if out.json {
                json(&sigs::info_json(&i))
            } else {
                say(&sigs::info_text(&i))
            }
        }
        SigsCommand::Clear { out, dev } => {
            let d = Device::open(&dev.device)?;
            d.sigs_clear()?;
            // The generation the clear made (unless another load raced it).
            let i = d.sigs_info()?;
            if out.json {
                json(&sigs::LoadedJson {
                    generation: i.generation,
                    nr_rules: i.nr_rules,
                })
            } else {
                say(&format!(
                    "signature set cleared: generation {}",
                    i.generation
                ))
            }
        }
    }
}

fn profile_command(cmd: ProfileCommand) -> Result<()> {
    match cmd {
        ProfileCommand::Build {
            vmlinux,
            btf,
            system_map,
            vm,
            kcore,
            output,
            dev,
        } => {
            // Memory only for what the files do not give.
            let needs_memory = system_map.is_none() || (vmlinux.is_none() && btf.is_none());
            let image = match (vm, kcore) {
                (Some(vm), _) if needs_memory => {
                    Some(kernel_image::from_vm(&controlling(&dev.device, vm)?, vm)?)
                }
                (None, Some(k)) if needs_memory => Some(kernel_image::from_kcore(&k)?),
                _ => None,
            };
            let p = linux::build(
                vmlinux.as_deref(),
                btf.as_deref(),
                system_map.as_deref(),
                image.as_ref(),
            )?;
            let text = p.to_string();
            sigs::write_output(&output, text.as_bytes())?;
            if output != std::path::Path::new("-") {
                let symbols = text.lines().filter(|l| l.starts_with("symbol ")).count();
                let fields = text.lines().filter(|l| l.starts_with("field ")).count();
                say(&format!(
                    "{}: {fields} fields, {symbols} symbols",
                    output.display()
                ))?;
            }
            Ok(())
        }
        ProfileCommand::Load {
            vm,
            file,
            slide,
            out,
            dev,
        } => {
            // Like target add: a persistent attachment is changed by
            // presenting the VM again.
            let (text, dev) = match file {
                // Checked first: a malformed file needs no module.
                Some(file) => {
                    let text = linux::load_text(&file)?;
                    (text, controlling(&dev.device, vm)?)
                }
                None => {
                    let dev = controlling(&dev.device, vm)?;
                    let image = kernel_image::from_vm(&dev, vm)?;
                    let p = linux::build(None, None, None, Some(&image))?;
                    (p.to_string().into_bytes(), dev)
                }
            };
            let p = linux::retry_eagain(linux::GUEST_UP_WAIT, linux::GUEST_UP_PAUSE, || {
                dev.linux_profile(vm, &text, slide)
            })
            .map_err(|e| linux::load_refused(e, vm, slide))?;
            let j = linux::loaded_json(vm, &p);
            if out.json {
                json(&j)
            } else {
                say(&linux::loaded_text(&j))
            }
        }
        ProfileCommand::Kallsyms { vm, kcore, dev } => {
            let image = match (vm, kcore) {
                (Some(vm), _) => kernel_image::from_vm(&controlling(&dev.device, vm)?, vm)?,
                (None, Some(k)) => kernel_image::from_kcore(&k)?,
                (None, None) => unreachable!("clap requires --vm or --kcore"),
            };
            let text = kernel_image::symbols_text(&image.kallsyms()?)?;
            sigs::write_output(std::path::Path::new("-"), text.as_bytes())
        }
        ProfileCommand::Show { file } => {
            let p = linux::load(&file)?;
            sigs::write_output(std::path::Path::new("-"), p.to_string().as_bytes())
        }
        ProfileCommand::Walk {
            file,
            kcore,
            slide,
            out,
        } => {
            let p = linux::load(&file)?;
            let w = linux::walk_kcore(&p, &kcore, slide)?;
            if out.json {
                json(&w)
            } else {
                sigs::write_output(std::path::Path::new("-"), linux::walk_text(&w).as_bytes())
            }
        }
    }
}

fn ps(path: &str, vm: u32, out: OutputOpt) -> Result<()> {
    let l = Device::open(path)?
        .process_list(vm)
        .map_err(|e| linux::ps_refused(e, vm))?;
    let j = linux::ps_json(vm, &l);
    if out.json {
        json(&j)
    } else {
        say(&linux::ps_text(&j))
    }
}

fn vmas(path: &str, vm: u32, pid: i32, out: OutputOpt) -> Result<()> {
    let dev = Device::open(path)?;
    let v = linux::retry_eagain_times(linux::VMAS_EAGAIN_RETRIES, linux::VMAS_EAGAIN_PAUSE, || {
        dev.process_vmas(vm, pid)
    })
    .map_err(|e| linux::vmas_refused(e, vm, pid))?;
    let j = linux::vmas_json(vm, pid, &v);
    if out.json {
        json(&j)
    } else {
        say(&linux::vmas_text(&j))
    }
}

/// Writes a line of output and flushes it, so that a reader of a blocking
/// `attach` sees the vm id at once.
fn say(line: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|_| out.flush())
        .map_err(|e| Error::from_io("write stdout", e))
}

fn json<T: Serialize>(value: &T) -> Result<()> {
    say(&serde_json::to_string(value).expect("plain structs serialize"))
}

#[derive(Serialize)]
struct VersionJson {
    abi_version: u32,
    /// The ABI this tool was built against.
    tool_abi_version: u32,
    max_vms: u32,
    max_vcpus: u32,
    vendor: String,
}

fn version(path: &str, out: OutputOpt) -> Result<()> {
    let v = Device::open(path)?.version()?;
    let j = VersionJson {
        abi_version: v.abi_version,
        tool_abi_version: abi::KVM_PFI_ABI_VERSION,
        max_vms: v.max_vms,
        max_vcpus: v.max_vcpus,
        vendor: abi::vendor_name(v.vendor),
    };
    if out.json {
        return json(&j);
    }
    say(&format!(
        "abi version: {} (tool built for {})\nmax vms:     {}\nmax vcpus:   {}\nvendor:      {}",
        j.abi_version, j.tool_abi_version, j.max_vms, j.max_vcpus, j.vendor
    ))
}

#[derive(Serialize)]
struct VmJson {
    vm_id: u32,
    vmm_pid: i32,
    stats_id: String,
    attach_flags: u32,
    nr_vcpus: u32,
}

#[derive(Serialize)]
struct VmsJson<T> {
    vms: Vec<T>,
}

fn list_all(dev: &Device) -> Result<(abi::kvm_pfi_version, Vec<VmInfo>)> {
    let v = dev.version()?;
    let vms = dev.list_vms(v.max_vms)?;
    Ok((v, vms))
}

fn list(path: &str, out: OutputOpt) -> Result<()> {
    let dev = Device::open(path)?;
    let (_, vms) = list_all(&dev)?;
    if out.json {
        let vms = vms
            .into_iter()
            .map(|i| VmJson {
                vm_id: i.vm_id,
                vmm_pid: i.vmm_pid,
                stats_id: i.stats_id,
                attach_flags: i.flags,
                nr_vcpus: i.nr_vcpus,
            })
            .collect();
        return json(&VmsJson { vms });
    }
    let mut text = format!(
        "{:<6} {:<8} {:<6} {:<11} {}",
        "VM", "PID", "VCPUS", "FLAGS", "STATS-ID"
    );
    for i in &vms {
        text.push_str(&format!(
            "\n{:<6} {:<8} {:<6} {:<11} {}",
            i.vm_id,
            i.vmm_pid,
            i.nr_vcpus,
            abi::attach_flags_text(i.flags),
            i.stats_id
        ));
    }
    say(&text)
}

#[derive(Serialize)]
struct VcpuJson {
    vcpu_idx: u32,
    entries: u64,
    exits: u64,
}

#[derive(Serialize)]
struct StatsJson {
    vm_id: u32,
    vmm_pid: i32,
    stats_id: String,
    attach_flags: u32,
    /// vCPUs with state, per VM_STATS (may exceed `vcpus.len()`).
    nr_vcpus: u32,
    entries: u64,
    exits: u64,
    /// Guest writes to protected pages over the module's report budget.
    writes_unreported: u64,
    /// Entries at CPL 0 that refused a kernel-mode target, by reason.
    kernel_no_smap: u64,
    kernel_fred: u64,
    kernel_guest_debug: u64,
    vcpus: Vec<VcpuJson>,
}

fn stats(path: &str, only: Option<u32>, out: OutputOpt) -> Result<()> {
    let dev = Device::open(path)?;
    let (v, vms) = list_all(&dev)?;
    let selected: Vec<&VmInfo> = match only {
        None => vms.iter().collect(),
        Some(id) => match vms.iter().find(|i| i.vm_id == id) {
            Some(i) => vec![i],
            None => return Err(Error::os(format!("vm {id}"), libc::ENOENT)),
        },
    };
    let mut result = Vec::new();
    for info in selected {
        let s = match dev.vm_stats(info.vm_id, info.nr_vcpus, v.max_vcpus) {
            Ok(s) => s,
            // Detached between LIST_VMS and VM_STATS: only an error if asked for.
            Err(e) if only.is_none() && e.errno() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        result.push(StatsJson {
            vm_id: info.vm_id,
            vmm_pid: info.vmm_pid,
            stats_id: info.stats_id.clone(),
            attach_flags: info.flags,
            nr_vcpus: s.nr_vcpus,
            entries: s.entries,
            exits: s.exits,
            writes_unreported: s.writes_unreported,
            kernel_no_smap: s.kernel_refused[0],
            kernel_fred: s.kernel_refused[1],
            kernel_guest_debug: s.kernel_refused[2],
            vcpus: s
                .vcpus
                .iter()
                .map(|c| VcpuJson {
                    vcpu_idx: c.vcpu_idx,
                    entries: c.entries,
                    exits: c.exits,
                })
                .collect(),
        });
    }
    if out.json {
        return json(&VmsJson { vms: result });
    }
    let mut text = String::new();
    for s in &result {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!(
            "vm {} (pid {}, {}, {}): {} vcpus, entries {}, exits {}",
            s.vm_id,
            s.vmm_pid,
            s.stats_id,
            abi::attach_flags_text(s.attach_flags),
            s.nr_vcpus,
            s.entries,
            s.exits
        ));
        if s.writes_unreported != 0 {
            text.push_str(&format!(", writes unreported {}", s.writes_unreported));
        }
        if s.kernel_no_smap + s.kernel_fred + s.kernel_guest_debug != 0 {
            text.push_str(&format!(
                ", kernel mode refused: no SMAP {}, FRED {}, guest debug {}",
                s.kernel_no_smap, s.kernel_fred, s.kernel_guest_debug
            ));
        }
        for c in &s.vcpus {
            text.push_str(&format!(
                "\n  vcpu {:<4} entries {:<20} exits {}",
                c.vcpu_idx, c.entries, c.exits
            ));
        }
    }
    if text.is_empty() {
        text = "no VM attached".into();
    }
    say(&text)
}

#[derive(Serialize)]
struct VmIdJson {
    vm_id: u32,
}

/// The device, opened as a controller of attached VM `vm_id`: only the file
/// that attached a VM may change it, so for a persistent attachment (made by
/// another `kvm-pfi attach --persistent`) present the VM's descriptor again,
/// taken from its VMM (the VM's creator, LIST_VMS's vmm_pid) like attach
/// does. Anything else is left to the module to refuse.
fn controlling(path: &str, vm_id: u32) -> Result<Device> {
    let dev = Device::open(path)?;
    let max_vms = dev.version()?.max_vms;
    let Some(info) = dev
        .list_vms(max_vms)?
        .into_iter()
        .find(|i| i.vm_id == vm_id)
    else {
        return Ok(dev);
    };
    if info.flags & abi::KVM_PFI_ATTACH_PERSISTENT == 0 {
        return Ok(dev);
    }
    let pid = info.vmm_pid;
    let pidfd = vmfd::pidfd_open(pid)?;
    for fd in vmfd::find_vm_fds(std::path::Path::new("/proc"), pid)? {
        let Ok(ours) = vmfd::pidfd_getfd(&pidfd, pid, fd) else {
            continue;
        };
        match dev.claim(ours.as_fd(), &format!("pid {pid} fd {fd}")) {
            Ok(id) if id == vm_id => return Ok(dev),
            // Another VM of the same VMM, or one not attached.
            Ok(_) => {}
            Err(e) if e.errno() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Error::Msg(format!(
        "vm {vm_id}: its VMM (pid {pid}) has no descriptor of it to present; \
         only the file that attached it may change it"
    )))
}

fn detach(path: &str, vm: u32, out: OutputOpt) -> Result<()> {
    controlling(path, vm)?.detach(vm)?;
    if out.json {
        json(&VmIdJson { vm_id: vm })
    } else {
        say(&format!("vm {vm} detached"))
    }
}

fn target(cmd: TargetCommand) -> Result<()> {
    match cmd {
        TargetCommand::Add { spec, out, dev } if spec.process.is_some() || spec.pid.is_some() => {
            let r = targets::rule_from_spec(&spec);
            let rule_id = controlling(&dev.device, r.vm_id)?
                .rule_add(&r)
                .map_err(|e| targets::rule_error_hint(e, r.vm_id))?;
            if out.json {
                json(&targets::NewRuleJson { rule_id })
            } else {
                say(&format!("rule {rule_id}"))
            }
        }
        TargetCommand::Add { spec, out, dev } => {
            let t = targets::target_from_spec(&spec);
            let target_id = controlling(&dev.device, t.vm_id)?
                .target_add(&t)
                .map_err(|e| targets::add_error_hint(e, t.flags))?;
            if out.json {
                json(&targets::NewTargetJson { target_id })
            } else {
                say(&target_id.to_string())
            }
        }
        TargetCommand::Rm {
            vm,
            target,
            out,
            dev,
        } => {
            controlling(&dev.device, vm)?.target_remove(vm, target)?;
            if out.json {
                json(&targets::TargetIdJson {
                    vm_id: vm,
                    target_id: target,
                })
            } else {
                say(&format!("vm {vm} target {target} removed"))
            }
        }
        TargetCommand::Ls { vm, out, dev } => {
            let list = Device::open(&dev.device)?.target_list(vm, abi::KVM_PFI_MAX_TARGETS)?;
            if out.json {
                json(&targets::targets_json(vm, &list))
            } else {
                say(&targets::targets_text(vm, &list))
            }
        }
        TargetCommand::Pages {
            vm,
            target,
            out,
            dev,
        } => {
            let pages = Device::open(&dev.device)?.target_pages(
                vm,
                target,
                abi::KVM_PFI_MAX_TARGET_PAGES,
            )?;
            if out.json {
                json(&targets::pages_json(vm, target, &pages))
            } else {
                say(&targets::pages_text(&pages))
            }
        }
    }
}

fn rule(cmd: RuleCommand) -> Result<()> {
    match cmd {
        RuleCommand::Ls { vm, out, dev } => {
            let list = Device::open(&dev.device)?.rule_list(vm)?;
            if out.json {
                json(&targets::rules_json(vm, &list))
            } else {
                say(&targets::rules_text(vm, &list))
            }
        }
        RuleCommand::Rm { vm, rule, out, dev } => {
            controlling(&dev.device, vm)?.rule_remove(vm, rule)?;
            if out.json {
                json(&serde_json::json!({ "vm_id": vm, "rule_id": rule }))
            } else {
                say(&format!("vm {vm} rule {rule} removed"))
            }
        }
    }
}

/// SIGINT and SIGTERM, blocked so that they are taken with sigtimedwait()
/// instead of killing us: we want to close /dev/kvm_pfi and exit 0.
struct Signals(libc::sigset_t);

impl Signals {
    fn block() -> Result<Self> {
        // SAFETY: sigset_t is plain data that sigemptyset initialises.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid set pointer; standard signal numbers.
        let rc = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(Error::os("block SIGINT/SIGTERM", rc));
        }
        Ok(Signals(set))
    }

    /// The signal that arrived within `timeout`, if any.
    fn wait(&self, timeout: Duration) -> Option<i32> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        // SAFETY: valid set and timespec; siginfo not requested.
        let sig = unsafe { libc::sigtimedwait(&self.0, std::ptr::null_mut(), &ts) };
        (sig > 0).then_some(sig)
    }
}

/// How often a non-persistent attach checks that its VM is still attached.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

fn attach(
    path: &str,
    pid: Option<i32>,
    fd: Option<i32>,
    vm_fd: Option<i32>,
    persistent: bool,
    out: OutputOpt,
) -> Result<()> {
    // Before anything else, so that a signal sent as soon as the vm id is
    // printed (or even earlier) still ends in a clean detach.
    let signals = if persistent {
        None
    } else {
        Some(Signals::block()?)
    };
    let dev = Device::open(path)?;
    let flags = if persistent {
        abi::KVM_PFI_ATTACH_PERSISTENT
    } else {
        0
    };

    let vm_id = match (pid, vm_fd) {
        (Some(pid), _) => {
            let (ours, theirs) = vmfd::take_vm_fd(pid, fd)?;
            // `ours` is closed right after: the module holds its own reference,
            // and ours would keep the VM alive after its VMM exits.
            dev.attach(ours.as_fd(), flags, &format!("pid {pid} fd {theirs}"))?
        }
        (None, Some(n)) => {
            // SAFETY: only borrowed for the ioctl; the kernel validates it.
            let fd = unsafe { BorrowedFd::borrow_raw(n) };
            dev.attach(fd, flags, &format!("fd {n}"))?
        }
        (None, None) => unreachable!("clap requires --pid or --vm-fd"),
    };

    if out.json {
        json(&VmIdJson { vm_id })?;
    } else if persistent {
        say(&format!("vm {vm_id} attached (persistent)"))?;
    } else {
        say(&format!(
            "vm {vm_id} attached; it stays attached until this command ends (Ctrl-C)"
        ))?;
    }
    let Some(signals) = signals else {
        return Ok(());
    };

    let max_vms = dev.version()?.max_vms;
    let end = hold(&signals, POLL_INTERVAL, || {
        Ok(dev.list_vms(max_vms)?.iter().any(|i| i.vm_id == vm_id))
    })?;
    if !out.json {
        match end {
            HoldEnd::Signal(sig) => {
                let name = if sig == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                say(&format!("{name}: detaching vm {vm_id}"))?;
            }
            HoldEnd::Gone => say(&format!("vm {vm_id} is no longer attached"))?,
        }
    }
    // Closing the device detaches the VM (if it still is attached).
    drop(dev);
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum HoldEnd {
    Signal(i32),
    Gone,
}

/// Waits for a signal, checking every `interval` whether the VM is still
/// attached.
fn hold(
    signals: &Signals,
    interval: Duration,
    mut attached: impl FnMut() -> Result<bool>,
) -> Result<HoldEnd> {
    loop {
        if let Some(sig) = signals.wait(interval) {
            return Ok(HoldEnd::Signal(sig));
        }
        if !attached()? {
            return Ok(HoldEnd::Gone);
        }
    }
}

/// `kvm-pfi --version`: this tool's version and ABI, and the loaded
/// module's (its ABI version from KVM_PFI_VERSION, its srcversion from
/// sysfs), saying whether they differ. Without the module, only the tool's
/// (exit 0: the question was answered).
fn version_flag(device: &str) -> Result<()> {
    let tool_abi = abi::KVM_PFI_ABI_VERSION;
    let mut text = format!(
        "kvm-pfi {} (ABI version {tool_abi})",
        env!("CARGO_PKG_VERSION")
    );
    match Device::open(device).and_then(|d| d.version()) {
        Ok(v) => {
            let src = std::fs::read_to_string("/sys/module/kvm_pfi/srcversion")
                .map(|s| format!(", srcversion {}", s.trim()))
                .unwrap_or_default();
            text.push_str(&format!(
                "\nmodule kvm_pfi: ABI version {}{src}",
                v.abi_version
            ));
            text.push_str(if v.abi_version == tool_abi {
                "\ntool and module agree"
            } else {
                "\nwarning: the tool and the loaded module differ in ABI version"
            });
        }
        Err(e) => text.push_str(&format!("\nmodule kvm_pfi: not available ({e})")),
    }
    say(&text)
}

fn generate(what: GenerateCommand) -> Result<()> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    match what {
        GenerateCommand::Man { dir } => {
            let what = || format!("write man pages to {}", dir.display());
            std::fs::create_dir_all(&dir).map_err(|e| Error::from_io(what(), e))?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| Error::from_io(what(), e))
        }
        GenerateCommand::Completions { shell } => {
            let mut cmd = cmd;
            let mut out = io::stdout().lock();
            clap_complete::generate(shell, &mut cmd, "kvm-pfi", &mut out);
            out.flush().map_err(|e| Error::from_io("write stdout", e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_ends_when_the_vm_is_gone() {
        let signals = Signals::block().unwrap();
        let mut polls = 0;
        let end = hold(&signals, Duration::from_millis(1), || {
            polls += 1;
            Ok(polls < 3)
        });
        assert_eq!(end.unwrap(), HoldEnd::Gone);
        assert_eq!(polls, 3);
    }

    #[test]
    fn hold_ends_on_sigterm_without_dying() {
        // The mask is per thread: this blocks SIGTERM in this test's thread
        // only, and raise() directs the signal at this very thread.
        let signals = Signals::block().unwrap();
        // SAFETY: SIGTERM is blocked here, so it stays pending.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        let end = hold(&signals, Duration::from_secs(5), || Ok(true)).unwrap();
        assert_eq!(end, HoldEnd::Signal(libc::SIGTERM));
    }

    #[test]
    fn hold_passes_errors_on() {
        let signals = Signals::block().unwrap();
        let err = hold(&signals, Duration::from_millis(1), || {
            Err(Error::os("KVM_PFI_LIST_VMS", libc::EIO))
        });
        assert_eq!(
            err.unwrap_err().to_string(),
            "KVM_PFI_LIST_VMS: Input/output error"
        );
    }
}
