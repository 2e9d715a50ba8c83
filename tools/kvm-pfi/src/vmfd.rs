// SPDX-License-Identifier: GPL-2.0
//! Finding a VMM's KVM VM descriptor and taking our own copy of it.

use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::error::{Error, Result};

/// What readlink(2) shows for a descriptor of KVM_CREATE_VM's anon inode.
pub const KVM_VM_LINK: &str = "anon_inode:kvm-vm";

/// Descriptors of process `pid` whose /proc link reads exactly
/// "anon_inode:kvm-vm", sorted. `proc_root` is "/proc" except in tests.
pub fn find_vm_fds(proc_root: &Path, pid: i32) -> Result<Vec<RawFd>> {
    let dir = proc_root.join(pid.to_string()).join("fd");
    let entries =
        fs::read_dir(&dir).map_err(|e| Error::from_io(format!("read {}", dir.display()), e))?;
    let mut fds = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::from_io(format!("read {}", dir.display()), e))?;
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        match fs::read_link(entry.path()) {
            Ok(target) if target.as_os_str() == KVM_VM_LINK => fds.push(fd),
            Ok(_) => {}
            // The process closed it while we were looking.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::from_io(
                    format!("readlink {}", entry.path().display()),
                    e,
                ))
            }
        }
    }
    fds.sort_unstable();
    Ok(fds)
}

/// Picks the descriptor to attach among `found` (the VM descriptors of `pid`),
/// honouring an explicit `--fd`.
pub fn choose_vm_fd(pid: i32, found: &[RawFd], wanted: Option<RawFd>) -> Result<RawFd> {
    match (wanted, found) {
        (Some(fd), _) if found.contains(&fd) => Ok(fd),
        (Some(fd), _) => Err(Error::Msg(format!(
            "pid {pid}: fd {fd} is not a KVM VM descriptor ({KVM_VM_LINK})"
        ))),
        (None, []) => Err(Error::Msg(format!(
            "pid {pid}: no KVM VM descriptor ({KVM_VM_LINK}) found"
        ))),
        (None, [fd]) => Ok(*fd),
        (None, many) => {
            let list: Vec<String> = many.iter().map(|fd| fd.to_string()).collect();
            Err(Error::Msg(format!(
                "pid {pid}: {} KVM VM descriptors (fds {}): choose one with --fd",
                many.len(),
                list.join(", ")
            )))
        }
    }
}

pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: plain syscall; on success it returns a new descriptor we own.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if rc < 0 {
        return Err(Error::last_os(format!("pidfd_open pid {pid}")));
    }
    // SAFETY: rc is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// Duplicates descriptor `fd` of the process behind `pidfd` into ours.
/// Needs PTRACE_MODE_ATTACH_REALCREDS over that process.
pub fn pidfd_getfd(pidfd: &OwnedFd, pid: i32, fd: RawFd) -> Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall; on success it returns a new descriptor we own.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if rc < 0 {
        return Err(Error::last_os(format!("pidfd_getfd pid {pid} fd {fd}")));
    }
    // SAFETY: rc is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// Whether our descriptor `fd` is a KVM VM, judged like the scan does.
pub fn is_vm_fd(proc_root: &Path, fd: RawFd) -> bool {
    fs::read_link(proc_root.join("self/fd").join(fd.to_string()))
        .map(|t| t.as_os_str() == KVM_VM_LINK)
        .unwrap_or(false)
}

/// Our own descriptor of the VM of process `pid`: the pidfd is taken first so
/// that the descriptor comes from the process we scanned even if `pid` is
/// reused meanwhile, and the copy is checked again before use. Returns our
/// descriptor and the number it has in the VMM.
pub fn take_vm_fd(pid: i32, wanted: Option<RawFd>) -> Result<(OwnedFd, RawFd)> {
    let proc_root = Path::new("/proc");
    let pidfd = pidfd_open(pid)?;
    let found = find_vm_fds(proc_root, pid)?;
    let fd = choose_vm_fd(pid, &found, wanted)?;
    let ours = pidfd_getfd(&pidfd, pid, fd)?;
    use std::os::fd::AsRawFd;
    if !is_vm_fd(proc_root, ours.as_raw_fd()) {
        return Err(Error::Msg(format!(
            "pid {pid}: fd {fd} changed while being taken; try again"
        )));
    }
    Ok((ours, fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake /proc/<pid>/fd: symlinks need not resolve, readlink is enough.
    fn fake_proc(pid: i32, links: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(pid.to_string()).join("fd");
        fs::create_dir_all(&dir).unwrap();
        for (name, target) in links {
            symlink(target, dir.join(name)).unwrap();
        }
        root
    }

    #[test]
    fn finds_only_exact_kvm_vm_links() {
        let root = fake_proc(
            1234,
            &[
                ("0", "/dev/null"),
                ("3", "/dev/kvm"),
                ("12", "anon_inode:kvm-vm"),
                ("13", "anon_inode:kvm-vcpu:0"),
                ("14", "anon_inode:kvm-vm-stats"),
                ("15", "anon_inode:[eventfd]"),
                ("7", "anon_inode:kvm-vm"),
                ("not-a-number", "anon_inode:kvm-vm"),
            ],
        );
        assert_eq!(find_vm_fds(root.path(), 1234).unwrap(), vec![7, 12]);
    }

    #[test]
    fn missing_process_is_an_os_error() {
        let root = tempfile::tempdir().unwrap();
        let err = find_vm_fds(root.path(), 99).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOENT));
        assert!(err.to_string().starts_with("read "), "{err}");
        assert!(
            err.to_string()
                .ends_with("/99/fd: No such file or directory"),
            "{err}"
        );
    }

    #[test]
    fn choosing() {
        assert_eq!(choose_vm_fd(1, &[9], None).unwrap(), 9);
        assert_eq!(choose_vm_fd(1, &[5, 9], Some(9)).unwrap(), 9);
        let none = choose_vm_fd(1, &[], None).unwrap_err().to_string();
        assert_eq!(
            none,
            "pid 1: no KVM VM descriptor (anon_inode:kvm-vm) found"
        );
        let many = choose_vm_fd(1, &[5, 9], None).unwrap_err().to_string();
        assert_eq!(
            many,
            "pid 1: 2 KVM VM descriptors (fds 5, 9): choose one with --fd"
        );
        let wrong = choose_vm_fd(1, &[5], Some(4)).unwrap_err().to_string();
        assert_eq!(
            wrong,
            "pid 1: fd 4 is not a KVM VM descriptor (anon_inode:kvm-vm)"
        );
    }

    #[test]
    fn our_own_descriptor_is_checked_too() {
        // /dev/null is open as fd 0..2 or can be opened: never a VM.
        let f = fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsRawFd;
        assert!(!is_vm_fd(Path::new("/proc"), f.as_raw_fd()));
    }
}
