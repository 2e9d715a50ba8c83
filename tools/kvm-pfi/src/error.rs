// SPDX-License-Identifier: GPL-2.0
//! Operational errors: printed by main() as one line `kvm-pfi: <what>: <why>`
//! and turned into exit status 1.

use std::ffi::CStr;
use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    /// A failed system call: what we tried, and its errno.
    Os { what: String, errno: i32 },
    /// Anything else, already phrased as "<what>: <why>".
    Msg(String),
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

    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { errno, .. } => Some(*errno),
            Error::Msg(_) => None,
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
            Error::Msg(msg) => f.write_str(msg),
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
}
