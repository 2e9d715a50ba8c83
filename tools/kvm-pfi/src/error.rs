// SPDX-License-Identifier: GPL-2.0
//! Errors: printed by main() as one line `kvm-pfi: <what>: <why>`, and the
//! exit status each kind of error gives (sysexits-like, see `exit`).

use std::ffi::CStr;
use std::fmt;
use std::io;

/// Exit statuses, as listed in `kvm-pfi --help`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Operational error: a failed ioctl, netlink trouble, a write error.
    pub const FAILURE: u8 = 1;
    /// Usage error (clap exits with it itself).
    #[cfg_attr(not(test), allow(dead_code))]
    pub const USAGE: u8 = 2;
    /// `snapshot --fail-on-match`: a rule matched.
    pub const MATCHED: u8 = 3;
    /// EX_DATAERR: a rule file that does not compile, a signature set the
    /// module refused, a malformed snapshot.
    pub const DATAERR: u8 = 65;
    /// EX_NOINPUT: an input file does not exist or cannot be read.
    pub const NOINPUT: u8 = 66;
    /// EX_UNAVAILABLE: the module is not loaded (no /dev/kvm_pfi).
    pub const UNAVAILABLE: u8 = 69;
    /// EX_NOPERM: permission denied (EPERM/EACCES), whatever was refused.
    pub const NOPERM: u8 = 77;
}

#[derive(Debug)]
pub enum Error {
    /// A failed system call: what we tried, and its errno.
    Os { what: String, errno: i32 },
    /// Anything else, already phrased as "<what>: <why>".
    Msg(String),
    /// The control device cannot be opened because it does not exist.
    NoDevice { path: String, errno: i32 },
    /// An input file named on the command line cannot be read.
    Input { path: String, errno: i32 },
    /// Bad data, already phrased ("rules.txt:3:7: expected ...").
    Data(String),
    /// `--fail-on-match` and this many matches were reported.
    Matched(u64),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn os(what: impl Into<String>, errno: i32) -> Self {
        Error::Os {
            what: what.into(),
            errno,
        }
    }

    /// Wraps the errno of a just-failed libc call.
    pub fn last_os(what: impl Into<String>) -> Self {
        Self::from_io(what, io::Error::last_os_error())
    }

    pub fn from_io(what: impl Into<String>, err: io::Error) -> Self {
        match err.raw_os_error() {
            Some(errno) => Error::os(what, errno),
            None => Error::Msg(format!("{}: {err}", what.into())),
        }
    }

    /// A failure to read an input file named by the operator.
    pub fn input(path: impl Into<String>, err: io::Error) -> Self {
        match err.raw_os_error() {
            Some(errno) => Error::Input {
                path: path.into(),
                errno,
            },
            None => Error::Msg(format!("{}: {err}", path.into())),
        }
    }

    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { errno, .. }
            | Error::NoDevice { errno, .. }
            | Error::Input { errno, .. } => Some(*errno),
            Error::Msg(_) | Error::Data(_) | Error::Matched(_) => None,
        }
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        let denied = |errno: i32| errno == libc::EPERM || errno == libc::EACCES;
        match self {
            Error::Os { errno, .. } if denied(*errno) => exit::NOPERM,
            Error::Os { .. } | Error::Msg(_) => exit::FAILURE,
            Error::NoDevice { .. } => exit::UNAVAILABLE,
            Error::Input { errno, .. } if denied(*errno) => exit::NOPERM,
            Error::Input { .. } => exit::NOINPUT,
            Error::Data(_) => exit::DATAERR,
            Error::Matched(_) => exit::MATCHED,
        }
    }
}

/// strerror() text without the " (os error N)" that io::Error appends, so
/// messages read like those of other Linux tools.
pub fn errno_text(errno: i32) -> String {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: buf is writable for its length; the XSI variant (what the libc
    // crate binds) NUL-terminates on success.
    let rc = unsafe { libc::strerror_r(errno, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return format!("error {errno}");
    }
    // SAFETY: NUL-terminated by strerror_r above.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Os { what, errno } => write!(f, "{what}: {}", errno_text(*errno)),
            Error::Msg(msg) | Error::Data(msg) => f.write_str(msg),
            Error::NoDevice { path, errno } => write!(
                f,
                "open {path}: {} (is the kvm_pfi module loaded?)",
                errno_text(*errno)
            ),
            Error::Input { path, errno } => write!(f, "{path}: {}", errno_text(*errno)),
            Error::Matched(n) => write!(
                f,
                "{n} match{} reported (--fail-on-match)",
                if *n == 1 { "" } else { "es" }
            ),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_errno_text() {
        let e = Error::os("open /dev/kvm_pfi", libc::ENOENT);
        assert_eq!(
            e.to_string(),
            "open /dev/kvm_pfi: No such file or directory"
        );
        assert_eq!(e.errno(), Some(libc::ENOENT));
    }

    #[test]
    fn exit_codes_by_kind() {
        let cases: &[(Error, u8, &str)] = &[
            (
                Error::os("KVM_PFI_DETACH vm 3", libc::ENOENT),
                1,
                "KVM_PFI_DETACH vm 3: No such file or directory",
            ),
            (Error::Msg("watch: gone".into()), 1, "watch: gone"),
            (
                Error::os("open /dev/kvm_pfi", libc::EACCES),
                77,
                "open /dev/kvm_pfi: Permission denied",
            ),
            (
                Error::os("join multicast group kvm_pfi/events", libc::EPERM),
                77,
                "join multicast group kvm_pfi/events: Operation not permitted",
            ),
            (
                Error::NoDevice {
                    path: "/dev/kvm_pfi".into(),
                    errno: libc::ENOENT,
                },
                69,
                "open /dev/kvm_pfi: No such file or directory (is the kvm_pfi module loaded?)",
            ),
            (
                Error::input("rules.txt", io::Error::from_raw_os_error(libc::ENOENT)),
                66,
                "rules.txt: No such file or directory",
            ),
            (
                Error::input("rules.txt", io::Error::from_raw_os_error(libc::EISDIR)),
                66,
                "rules.txt: Is a directory",
            ),
            (
                Error::input("rules.txt", io::Error::from_raw_os_error(libc::EACCES)),
                77,
                "rules.txt: Permission denied",
            ),
            (
                Error::Data("rules.txt:3:7: expected `}`".into()),
                65,
                "rules.txt:3:7: expected `}`",
            ),
            (Error::Matched(2), 3, "2 matches reported (--fail-on-match)"),
            (Error::Matched(1), 3, "1 match reported (--fail-on-match)"),
        ];
        for (e, code, text) in cases {
            assert_eq!(
                (e.exit_code(), e.to_string().as_str()),
                (*code, *text),
                "{e:?}"
            );
        }
        assert_eq!(
            (exit::OK, exit::FAILURE, exit::USAGE),
            (0, 1, 2),
            "the statuses scripts already rely on"
        );
    }
}
