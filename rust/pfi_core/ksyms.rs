// SPDX-License-Identifier: GPL-2.0

//! Symbol addresses from the text of a `System.map` or of `/proc/kallsyms`:
//! lines `ADDRESS TYPE NAME`, kallsyms adding `\t[MODULE]` for module
//! symbols (which are skipped: the walks need core kernel symbols only).
//!
//! One pass over the text fills the addresses of all the names asked for;
//! nothing is allocated. A line that is not of that form is an error at
//! its number (a file that is not a symbol table must not give a profile).

/// Why a symbol table was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymsError {
    /// Line (counted from 1) is not `HEX TYPE NAME`.
    BadLine(usize),
    /// Every address is zero: kallsyms read without the privilege to see
    /// addresses (`kptr_restrict`).
    AddressesHidden,
}

/// Finds the first address of each of `names` in `text`; `out[i]` is the
/// address of `names[i]`, `None` if absent. Returns the number of core
/// symbol lines read.
pub fn lookup(text: &[u8], names: &[&str], out: &mut [Option<u64>]) -> Result<usize, SymsError> {
    for o in out.iter_mut() {
        *o = None;
    }
    let mut lines = 0usize;
    let mut nonzero = false;
    for (i, line) in text.split(|&c| c == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let bad = SymsError::BadLine(i.saturating_add(1));
        let mut fields = line.split(|&c| c == b' ' || c == b'\t').filter(|f| !f.is_empty());
        let addr = fields.next().and_then(parse_hex).ok_or(bad)?;
        let ty = fields.next().ok_or(bad)?;
        let name = fields.next().ok_or(bad)?;
        if ty.len() != 1 || (!ty.iter().all(u8::is_ascii_alphabetic) && ty != b"?") {
            return Err(bad);
        }
        if fields.next().is_some() {
            continue; // "[module]": not a core kernel symbol
        }
        lines = lines.saturating_add(1);
        nonzero |= addr != 0;
        for (n, o) in names.iter().zip(out.iter_mut()) {
            if o.is_none() && n.as_bytes() == name {
                *o = Some(addr);
            }
        }
    }
    if lines > 0 && !nonzero {
        return Err(SymsError::AddressesHidden);
    }
    Ok(lines)
}

/// A hexadecimal number of 1 to 16 digits.
pub fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        let d = char::from(c).to_digit(16)?;
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines cut from the test kernel's System.map (7.3.4, KASLR off at
    /// link time), and from a kallsyms with a module symbol.
    const MAP: &[u8] = include_bytes!("tests/fixtures/linux-7.3-System.map");

    #[test]
    fn finds_the_symbols_of_the_test_kernel() {
        let mut out = [None; 3];
        let n = lookup(MAP, &["init_task", "_text", "no_such_symbol"], &mut out).unwrap();
        assert!(n >= 5);
        assert_eq!(out, [Some(0xffffffff82812ac0), Some(0xffffffff81000000), None]);
    }

    #[test]
    fn kallsyms_module_lines_are_skipped() {
        let text = b"ffffffff81000000 T _text\nffffffffc0001000 t init_task\t[kvm_pfi]\nffffffff82812ac0 D init_task\n";
        let mut out = [None; 1];
        assert_eq!(lookup(text, &["init_task"], &mut out), Ok(2));
        assert_eq!(out[0], Some(0xffffffff82812ac0));
    }

    #[test]
    fn garbage_and_hidden_addresses_are_refused() {
        let mut out = [None; 1];
        assert_eq!(lookup(b"ffffffff81000000 T _text\nhello\n", &["_text"], &mut out), Err(SymsError::BadLine(2)));
        assert_eq!(lookup(b"xyz T a\n", &["a"], &mut out), Err(SymsError::BadLine(1)));
        assert_eq!(lookup(b"12345678901234567 T a\n", &["a"], &mut out), Err(SymsError::BadLine(1)));
        assert_eq!(lookup(b"0 TT a\n", &["a"], &mut out), Err(SymsError::BadLine(1)));
        assert_eq!(
            lookup(b"0000000000000000 T _text\n0000000000000000 D init_task\n", &["a"], &mut out),
            Err(SymsError::AddressesHidden)
        );
        // Any bytes at all: an error or a result, never a panic.
        for b in 0..=255u8 {
            let t = [b'1', b' ', b'T', b' ', b, b'\n', b];
            let _ = lookup(&t, &["a"], &mut out);
        }
    }
}
