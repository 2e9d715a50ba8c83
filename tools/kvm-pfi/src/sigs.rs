// SPDX-License-Identifier: GPL-2.0
//! `kvm-pfi sigs`: compiling rule files into the module's binary signature
//! set (with pfi_core's text compiler, rust/pfi_core/sigs_text.rs) and the
//! SIGS_* ioctls' results as text and JSON.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use serde::Serialize;

use crate::abi;
use crate::error::{Error, Result};
use pfi_core::sigs_text;

/// How a path from the command line is named in messages ("-" is stdin).
pub fn path_name(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".into()
    } else {
        path.display().to_string()
    }
}

/// The whole of an input file named on the command line, or stdin for "-".
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let res = if path == Path::new("-") {
        io::stdin().lock().read_to_end(&mut buf)
    } else {
        File::open(path).and_then(|mut f| f.read_to_end(&mut buf))
    };
    res.map_err(|e| Error::input(path_name(path), e))?;
    Ok(buf)
}

/// Compiles rule text; an error is located like a compiler's:
/// `NAME:LINE:COL: message` (1-based line and column).
pub fn compile_text(name: &str, src: &[u8]) -> Result<sigs_text::Compiled> {
    let src = std::str::from_utf8(src).map_err(|e| {
        // Locate the first invalid byte the same way.
        let good = &src[..e.valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let start = good.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let col = String::from_utf8_lossy(&good[start..]).chars().count() + 1;
        Error::Data(format!("{name}:{line}:{col}: not UTF-8 text"))
    })?;
    sigs_text::compile(src)
        .map_err(|e| Error::Data(format!("{name}:{}:{}: {}", e.line, e.col, e.msg)))
}

/// `sigs compile FILE`: the compiled set.
pub fn compile_file(path: &Path) -> Result<sigs_text::Compiled> {
    compile_text(&path_name(path), &read_input(path)?)
}

/// Writes a compiled set to OUT, or stdout for "-".
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    if path == Path::new("-") {
        let mut out = io::stdout().lock();
        return out
            .write_all(bytes)
            .and_then(|_| out.flush())
            .map_err(|e| Error::from_io("write stdout", e));
    }
    std::fs::write(path, bytes).map_err(|e| Error::from_io(format!("write {}", path.display()), e))
}

/// What an errno of KVM_PFI_SIGS_LOAD means (kvm_pfi.h), and whether it
/// blames the set (exit status 65) rather than the system.
fn load_errno(errno: i32) -> Option<(String, &'static str, bool)> {
    Some(match errno {
        libc::EINVAL => ("empty set, no rules, or flags set".into(), "EINVAL", true),
        libc::E2BIG => (
            format!(
                "larger than {} bytes, a count above its limit, a chain longer than {} \
                 segments or a pattern spanning more than {} bytes",
                abi::KVM_PFI_SIGS_MAX_SIZE,
                abi::KVM_PFI_SIG_MAX_SEGMENTS,
                abi::KVM_PFI_SIG_MAX_SPAN
            ),
            "E2BIG",
            true,
        ),
        libc::EPROTO => ("unknown set version".into(), "EPROTO", true),
        libc::ELOOP => ("segment chain loops".into(), "ELOOP", true),
        libc::EBADMSG => (
            "malformed (magic, truncated, offsets out of bounds, an empty segment, \
             a bad jump, a pattern without a fixed byte, a bad rule name, or value \
             bits outside the mask)"
                .into(),
            "EBADMSG",
            true,
        ),
        libc::EFAULT => ("set not readable".into(), "EFAULT", false),
        libc::ENOMEM => ("out of memory".into(), "ENOMEM", false),
        _ => return None,
    })
}

/// The error for a failed KVM_PFI_SIGS_LOAD: a refused set reads as
/// "signature set refused: segment chain loops (ELOOP)" (status 65).
pub fn refused(err: Error) -> Error {
    let Some(errno) = err.errno() else {
        return err;
    };
    match load_errno(errno) {
        Some((meaning, name, true)) => {
            Error::Data(format!("signature set refused: {meaning} ({name})"))
        }
        Some((meaning, name, false)) => {
            Error::Msg(format!("KVM_PFI_SIGS_LOAD: {meaning} ({name})"))
        }
        // EPERM, ENOTTY (an older module), ...: as any ioctl error.
        None => err,
    }
}

#[derive(Debug, Serialize)]
pub struct LoadedJson {
    pub generation: u32,
    pub nr_rules: u32,
}

pub fn loaded_text(l: &LoadedJson) -> String {
    format!(
        "signature set loaded: generation {}, {} rule{}",
        l.generation,
        l.nr_rules,
        if l.nr_rules == 1 { "" } else { "s" }
    )
}

#[derive(Debug, Serialize)]
pub struct InfoJson {
    pub generation: u32,
    pub nr_rules: u32,
    pub nr_patterns: u32,
    pub size: u32,
    pub pages_scanned: u64,
    pub bytes_scanned: u64,
    pub detections: u64,
}

pub fn info_json(i: &abi::kvm_pfi_sigs_info) -> InfoJson {
    InfoJson {
        generation: i.generation,
        nr_rules: i.nr_rules,
        nr_patterns: i.nr_patterns,
        size: i.size,
        pages_scanned: i.pages_scanned,
        bytes_scanned: i.bytes_scanned,
        detections: i.detections,
    }
}

pub fn info_text(i: &abi::kvm_pfi_sigs_info) -> String {
    let set = if i.nr_rules == 0 {
        "none active".to_string()
    } else {
        format!(
            "{} rules, {} patterns, {} bytes",
            i.nr_rules, i.nr_patterns, i.size
        )
    };
    format!(
        "signature set: {set}\ngeneration:    {}\npages scanned: {}\nbytes scanned: {}\ndetections:    {}",
        i.generation, i.pages_scanned, i.bytes_scanned, i.detections
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit;

    #[test]
    fn refusals_read_as_their_meaning() {
        let refuse = |errno| refused(Error::os("KVM_PFI_SIGS_LOAD", errno));
        let e = refuse(libc::ELOOP);
        assert_eq!(
            e.to_string(),
            "signature set refused: segment chain loops (ELOOP)"
        );
        assert_eq!(e.exit_code(), exit::DATAERR);
        for (errno, name) in [
            (libc::EINVAL, "(EINVAL)"),
            (libc::E2BIG, "(E2BIG)"),
            (libc::EPROTO, "(EPROTO)"),
            (libc::EBADMSG, "(EBADMSG)"),
        ] {
            let e = refuse(errno);
            let text = e.to_string();
            assert!(text.starts_with("signature set refused: "), "{text}");
            assert!(text.ends_with(name), "{text}");
            assert_eq!(e.exit_code(), exit::DATAERR, "{text}");
        }
        assert!(refuse(libc::E2BIG)
            .to_string()
            .contains("larger than 1048576 bytes"));
        assert!(refuse(libc::E2BIG)
            .to_string()
            .contains("longer than 32 segments"));
        // Not the set's fault: operational errors.
        let e = refuse(libc::ENOMEM);
        assert_eq!(e.to_string(), "KVM_PFI_SIGS_LOAD: out of memory (ENOMEM)");
        assert_eq!(e.exit_code(), exit::FAILURE);
        let e = refuse(libc::EPERM);
        assert_eq!(e.to_string(), "KVM_PFI_SIGS_LOAD: Operation not permitted");
        assert_eq!(e.exit_code(), exit::NOPERM);
        let e = refuse(libc::ENOTTY);
        assert_eq!(e.exit_code(), exit::FAILURE);
        // Errors without an errno pass through.
        let e = refused(Error::Data("x".into()));
        assert_eq!((e.to_string(), e.exit_code()), ("x".into(), exit::DATAERR));
    }

    /// The CLI's FILE:LINE:COL is the compiler's own position.
    #[test]
    fn rule_file_errors_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.rules");
        let src = "rule ok_rule {\n  strings:\n    $a = \"fine\"\n  condition:\n    any of them\n}\n\
                   rule bad_rule {\n  strings:\n    $a = { 4D 5A QQ 50 }\n  condition:\n    any of them\n}\n";
        std::fs::write(&path, src).unwrap();
        let lib = sigs_text::parse(src)
            .map(|_| ())
            .expect_err("QQ is no hex byte");
        assert_eq!(lib.line, 9);
        let err = compile_file(&path).err().unwrap();
        assert_eq!(err.exit_code(), exit::DATAERR);
        assert_eq!(
            err.to_string(),
            format!("{}:9:{}: {}", path.display(), lib.col, lib.msg)
        );
        // From stdin, the file is named <stdin>.
        let err = compile_text(&path_name(Path::new("-")), src.as_bytes())
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("<stdin>:9:"), "{err}");
    }

    /// What `sigs compile` writes is a set as kvm_pfi.h lays it out.
    #[test]
    fn compiled_set_has_the_uapi_header() {
        let c = compile_text(
            "r",
            b"rule one { strings: $a = { 4D 5A ?? 50 } condition: $a }\n\
              rule two { strings: $a = \"abc\" $b = \"xyz\" condition: any of them }\n",
        )
        .unwrap();
        let size = std::mem::size_of::<abi::kvm_pfi_sigs_header>();
        assert!(c.blob.len() > size);
        let word = |i: usize| u32::from_le_bytes(c.blob[4 * i..4 * i + 4].try_into().unwrap());
        let h = abi::kvm_pfi_sigs_header {
            magic: word(0),
            version: word(1),
            size: word(2),
            nr_rules: word(3),
            nr_patterns: word(4),
            nr_segments: word(5),
            strings_len: word(6),
            reserved: word(7),
        };
        assert_eq!(h.magic, abi::KVM_PFI_SIGS_MAGIC);
        assert_eq!(h.version, abi::KVM_PFI_SIGS_VERSION);
        assert_eq!(h.size as usize, c.blob.len());
        assert_eq!((h.nr_rules, h.nr_patterns, h.reserved), (2, 3, 0));
        assert_eq!(
            c.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
    }

    /// The rule format is a subset of YARA: one file serves `sigs load`
    /// and `snapshot --yara`.
    #[test]
    fn one_rule_file_for_both_compilers() {
        let src = b"// comment\nrule demo_marker : tag {\n  meta:\n    author = \"x\"\n  strings:\n\
                    $a = { 4D 5A ?? [2-4] 50 }\n    $b = \"KVM-PFI-DEMO\"\n  condition:\n    any of them\n}\n";
        assert_eq!(compile_text("r", src).unwrap().rules.len(), 1);
        let rules = crate::yara::compile_source("r", src).unwrap();
        let mut scanner = yara_x::Scanner::new(&rules);
        let hits = scanner.scan(b"..MZ\x90\x00\x01P..").unwrap();
        assert_eq!(hits.matching_rules().len(), 1);
    }

    #[test]
    fn missing_rule_file_is_no_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.txt");
        let err = compile_file(&path).err().unwrap();
        assert_eq!(err.exit_code(), exit::NOINPUT);
        assert_eq!(
            err.to_string(),
            format!("{}: No such file or directory", path.display())
        );
    }

    #[test]
    fn not_utf8_is_located() {
        let err = compile_text("r.txt", b"rule a {\n  $x = \"\xff\"\n}")
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "r.txt:2:9: not UTF-8 text");
        assert_eq!(err.exit_code(), exit::DATAERR);
    }

    #[test]
    fn info_rendering() {
        let i = abi::kvm_pfi_sigs_info {
            generation: 4,
            nr_rules: 2,
            nr_patterns: 3,
            size: 200,
            pages_scanned: 10,
            bytes_scanned: 40960,
            detections: 1,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&info_json(&i)).unwrap(),
            r#"{"generation":4,"nr_rules":2,"nr_patterns":3,"size":200,"pages_scanned":10,"bytes_scanned":40960,"detections":1}"#
        );
        let text = info_text(&i);
        assert!(
            text.starts_with("signature set: 2 rules, 3 patterns, 200 bytes\n"),
            "{text}"
        );
        assert!(text.contains("detections:    1"), "{text}");
        let none = abi::kvm_pfi_sigs_info {
            generation: 5,
            ..Default::default()
        };
        assert!(info_text(&none).starts_with("signature set: none active\ngeneration:    5"));
        assert_eq!(
            loaded_text(&LoadedJson {
                generation: 7,
                nr_rules: 1
            }),
            "signature set loaded: generation 7, 1 rule"
        );
        assert_eq!(
            serde_json::to_string(&LoadedJson {
                generation: 7,
                nr_rules: 3
            })
            .unwrap(),
            r#"{"generation":7,"nr_rules":3}"#
        );
    }
}
