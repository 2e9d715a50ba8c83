// SPDX-License-Identifier: GPL-2.0

//! The kernel's own symbol table, found and decoded in a copy of the
//! kernel image's memory: what `/proc/kallsyms` prints, with nothing from
//! the kernel's files.
//!
//! `scripts/kallsyms.c` (7.3) emits, in `.rodata`, each table 4-byte
//! aligned and in this order:
//!
//! - `kallsyms_num_syms`: `u32` n;
//! - `kallsyms_names`: n entries, a ULEB128 length (1 or 2 bytes, at most
//!   `0x3fff`) and that many token numbers; the expanded name's first
//!   character is the symbol's type (`T`, `d`, ...);
//! - `kallsyms_markers`: `u32` offset in `kallsyms_names` of every 256th
//!   entry, the first 0;
//! - `kallsyms_token_table`: 256 NUL-terminated tokens, token c being "c"
//!   itself for every character c that occurs in a name;
//! - `kallsyms_token_index`: 256 `u16` offsets of the tokens in the table;
//! - `kallsyms_offsets`: n `i32`, each the symbol's address less the
//!   address of the entry itself (PC-relative: independent of the KASLR
//!   slide), in address order.
//!
//! Nothing names where they are, so [`Kallsyms::find`] looks for the run of
//! tokens `"0"`..`"9"` (entries 0x30-0x39 of the token table), which a
//! token index 16 entries further must describe exactly, then walks back
//! through the markers to `kallsyms_num_syms` and checks that the names
//! between decode to n entries whose every 256th starts at its marker and
//! whose end meets the markers. Every offset is bounded by the image: a
//! hostile or damaged image gives an error, never a panic, and at most
//! [`MAX_CANDIDATES`] token-table candidates are tried. Older layouts
//! (`kallsyms_relative_base`, offsets before the names) are not read.

use core::ops::ControlFlow;

use super::le::{le16, le32};

/// Token-table candidates tried before giving up.
pub const MAX_CANDIDATES: usize = 16;
/// Symbols at most: `kallsyms_seqs_of_names` stores an index in 3 bytes.
pub const MAX_SYMBOLS: u32 = 1 << 24;
/// The longest expanded name taken, its type character included
/// (`KSYM_NAME_LEN` is 512).
pub const MAX_NAME: usize = 1024;

/// Entries 0x30..=0x39 of the token table as every kernel has them.
const DIGITS: &[u8; 20] = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00";
/// The compressed length's bound, as `scripts/kallsyms.c` enforces it.
const MAX_COMPRESSED: usize = 0x3fff;

/// Why no table was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KallsymsError {
    /// No token table (the kernel has no `CONFIG_KALLSYMS`, the image is
    /// not all there, or its layout is another one).
    NotFound,
    /// A token table, but no names and markers that fit it.
    NoNames,
    /// Tables that fit, but an entry decodes to a bad name, or addresses
    /// are not in order.
    Corrupt,
}

impl core::fmt::Display for KallsymsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            KallsymsError::NotFound => "no kallsyms token table in the kernel image",
            KallsymsError::NoNames => "a kallsyms token table, but no names and markers before it",
            KallsymsError::Corrupt => "the kallsyms tables do not decode",
        })
    }
}

/// The tables found in an image.
#[derive(Debug, Clone, Copy)]
pub struct Kallsyms<'a> {
    image: &'a [u8],
    /// Virtual address of `image[0]`.
    base: u64,
    count: u32,
    names: usize,
    token_table: usize,
    token_index: usize,
    offsets: usize,
}

/// One symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol<'n> {
    /// Its run-time address.
    pub addr: u64,
    /// Its type character, as `nm` and `/proc/kallsyms` print it.
    pub kind: u8,
    /// Its name.
    pub name: &'n [u8],
}

fn align4(x: usize) -> Option<usize> {
    x.checked_add(3).map(|v| v & !3)
}

/// The end (one past the NUL) of the non-empty NUL-terminated string at `at`,
/// at most 256 bytes long.
fn token_end(image: &[u8], at: usize) -> Option<usize> {
    let s = image.get(at..)?;
    let n = s.iter().take(257).position(|&c| c == 0)?;
    (n > 0).then(|| at.wrapping_add(n).wrapping_add(1))
}

/// One name entry at `at`: its compressed bytes and the offset after it.
fn entry(image: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let b0 = usize::from(*image.get(at)?);
    let (len, data) = if b0 & 0x80 != 0 {
        let b1 = usize::from(*image.get(at.checked_add(1)?)?);
        ((b0 & 0x7f) | (b1 << 7), at.checked_add(2)?)
    } else {
        (b0, at.checked_add(1)?)
    };
    if len == 0 || len > MAX_COMPRESSED {
        return None;
    }
    let end = data.checked_add(len)?;
    Some((image.get(data..end)?, end))
}

impl<'a> Kallsyms<'a> {
    /// Finds the tables in `image`, a copy of kernel memory whose first
    /// byte is at virtual address `base` (pages that could not be read
    /// are zeros).
    pub fn find(image: &'a [u8], base: u64) -> Result<Self, KallsymsError> {
        let mut best = KallsymsError::NotFound;
        let mut tried = 0usize;
        let mut from = 0usize;
        while tried < MAX_CANDIDATES {
            let Some(hit) = image
                .get(from..)
                .and_then(|s| s.windows(DIGITS.len()).position(|w| w == DIGITS))
                .and_then(|p| p.checked_add(from))
            else {
                break;
            };
            from = hit.saturating_add(1);
            let Some((table, index)) = Self::token_table_at(image, hit) else { continue };
            tried = tried.saturating_add(1);
            match Self::names_before(image, base, table, index) {
                Ok(k) => return Ok(k),
                Err(e) => best = e,
            }
        }
        Err(best)
    }

    /// With token 0x30 at `zero`: the token table's and index's offsets,
    /// if a token index after the table describes it exactly.
    fn token_table_at(image: &[u8], zero: usize) -> Option<(usize, usize)> {
        let mut end = zero;
        for _ in 0x30..256 {
            end = token_end(image, end)?;
        }
        let index = align4(end)?;
        let first = usize::from(le16(image, index)?);
        let to_zero = usize::from(le16(image, index.checked_add(0x60)?)?);
        let table = zero.checked_sub(to_zero)?;
        if first != 0 || table % 4 != 0 {
            return None;
        }
        // Every token i starts at table + index[i] and ends where i+1 starts.
        let mut at = table;
        for i in 0..256usize {
            let off = usize::from(le16(image, index.checked_add(i.checked_mul(2)?)?)?);
            if table.checked_add(off)? != at {
                return None;
            }
            at = token_end(image, at)?;
        }
        (at == end).then_some((table, index))
    }

    /// The markers end at the token table; `kallsyms_num_syms` and the
    /// names come before them.
    fn names_before(image: &'a [u8], base: u64, table: usize, index: usize) -> Result<Self, KallsymsError> {
        let word = |at: usize| le32(image, at);
        // Markers increase from 0: back from the token table to that 0.
        let mut markers = table;
        let mut above = u32::MAX;
        loop {
            let at = markers.checked_sub(4).ok_or(KallsymsError::NoNames)?;
            let m = word(at).ok_or(KallsymsError::NoNames)?;
            if m >= above {
                return Err(KallsymsError::NoNames);
            }
            markers = at;
            above = m;
            if m == 0 {
                break;
            }
            if table.wrapping_sub(markers) / 4 > (MAX_SYMBOLS / 256) as usize {
                return Err(KallsymsError::NoNames);
            }
        }
        let nr_markers = table.wrapping_sub(markers) / 4;
        let last_marker = word(table.wrapping_sub(4)).ok_or(KallsymsError::NoNames)? as usize;
        let low = nr_markers.saturating_sub(1).checked_mul(256).ok_or(KallsymsError::NoNames)?;
        // The last 256 or fewer entries: at most that many maximal ones.
        let tail = 256usize.wrapping_mul(MAX_COMPRESSED + 2);
        let top = markers.checked_sub(last_marker).and_then(|t| t.checked_sub(4)).ok_or(KallsymsError::NoNames)?;
        let mut x = top & !3;
        let lowest = top.saturating_sub(tail);
        let offsets = index.checked_add(512).ok_or(KallsymsError::NoNames)?;
        loop {
            if let Some(n) = word(x).map(|n| n as usize) {
                if n > low && n <= low.saturating_add(256) {
                    let names = x.wrapping_add(4);
                    if Self::names_fit(image, names, n, markers) {
                        let k = Kallsyms {
                            image,
                            base,
                            count: n as u32,
                            names,
                            token_table: table,
                            token_index: index,
                            offsets,
                        };
                        return k.check().map(|()| k);
                    }
                }
            }
            if x < lowest.saturating_add(4) {
                return Err(KallsymsError::NoNames);
            }
            x = x.wrapping_sub(4);
        }
    }

    /// `n` entries from `names` whose every 256th starts at its marker and
    /// whose last ends within the alignment before `markers`.
    fn names_fit(image: &[u8], names: usize, n: usize, markers: usize) -> bool {
        let mut at = names;
        for i in 0..n {
            if i % 256 == 0 {
                let m = le32(image, markers.wrapping_add((i / 256).wrapping_mul(4))).map(|m| m as usize);
                if m != at.checked_sub(names) {
                    return false;
                }
            }
            match entry(image, at) {
                Some((_, next)) if next <= markers => at = next,
                _ => return false,
            }
        }
        markers.wrapping_sub(at) < 4 && image.get(at..markers).is_some_and(|pad| pad.iter().all(|&b| b == 0))
    }

    /// Every name decodes and the addresses are in order. A type is any
    /// printable byte: `nm` gives `?` to some linker symbols
    /// (`__nosave_begin`), and kallsyms keeps them.
    fn check(&self) -> Result<(), KallsymsError> {
        let end = (self.count as usize).checked_mul(4).and_then(|n| self.offsets.checked_add(n)).ok_or(KallsymsError::Corrupt)?;
        if end > self.image.len() {
            return Err(KallsymsError::Corrupt);
        }
        let mut last = 0u64;
        let mut ok = true;
        let r = self.for_each(|s| {
            if s.addr < last || !s.kind.is_ascii_graphic() {
                ok = false;
                return ControlFlow::Break(());
            }
            last = s.addr;
            ControlFlow::Continue(())
        });
        if r.is_err() || !ok {
            return Err(KallsymsError::Corrupt);
        }
        Ok(())
    }

    /// The number of symbols.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether there are none (never, for tables [`find`](Self::find) gave).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The token for byte `c`.
    fn token(&self, c: u8) -> Option<&'a [u8]> {
        let off = usize::from(le16(self.image, self.token_index.checked_add(usize::from(c) * 2)?)?);
        let at = self.token_table.checked_add(off)?;
        let end = token_end(self.image, at)?;
        self.image.get(at..end.wrapping_sub(1))
    }

    /// Calls `f` with every symbol, in address order (the kernel's table
    /// order); `Err` if an entry does not decode.
    pub fn for_each(&self, mut f: impl FnMut(Symbol<'_>) -> ControlFlow<()>) -> Result<(), KallsymsError> {
        let mut buf = [0u8; MAX_NAME];
        let mut at = self.names;
        for i in 0..self.count as usize {
            let (data, next) = entry(self.image, at).ok_or(KallsymsError::Corrupt)?;
            at = next;
            let mut len = 0usize;
            for &c in data {
                let t = self.token(c).ok_or(KallsymsError::Corrupt)?;
                let dst = buf.get_mut(len..len.wrapping_add(t.len())).ok_or(KallsymsError::Corrupt)?;
                dst.copy_from_slice(t);
                len = len.wrapping_add(t.len());
            }
            let (&kind, name) = buf.get(..len).and_then(|b| b.split_first()).ok_or(KallsymsError::Corrupt)?;
            if name.is_empty() || name.iter().any(|&c| !c.is_ascii_graphic()) {
                return Err(KallsymsError::Corrupt);
            }
            let slot = self.offsets.wrapping_add(i.wrapping_mul(4));
            let rel = le32(self.image, slot).ok_or(KallsymsError::Corrupt)? as i32;
            let addr = self.base.wrapping_add(slot as u64).wrapping_add(i64::from(rel) as u64);
            if f(Symbol { addr, kind, name }).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The address of the first symbol named `name`.
    pub fn address_of(&self, name: &[u8]) -> Option<u64> {
        let mut found = None;
        self.for_each(|s| {
            if s.name == name {
                found = Some(s.addr);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })
        .ok()?;
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;
    use std::{format, vec};

    /// A kernel image's tables as `scripts/kallsyms.c` lays them out, with
    /// tokens: every byte that occurs in a name is itself, and byte 0x01 is
    /// "_x" (a pair token), the other unused bytes "~N" fillers.
    struct Built {
        image: Vec<u8>,
    }

    const BASE: u64 = 0xffff_ffff_8100_0000;

    fn pad4(v: &mut Vec<u8>) {
        while v.len() % 4 != 0 {
            v.push(0);
        }
    }

    fn build(syms: &[(u64, u8, &str)], lead: usize) -> Built {
        let mut tokens: Vec<Vec<u8>> = (0..256u32).map(|i| format!("~{i}").into_bytes()).collect();
        for (_, k, n) in syms {
            for c in core::iter::once(*k).chain(n.bytes()) {
                tokens[c as usize] = vec![c];
            }
        }
        for c in b'0'..=b'9' {
            tokens[c as usize] = vec![c];
        }
        tokens[1] = b"_x".to_vec();
        let mut image = vec![0xccu8; lead];
        pad4(&mut image);
        image.extend_from_slice(&(syms.len() as u32).to_le_bytes());
        let names = image.len();
        let mut markers = Vec::new();
        for (i, (_, k, n)) in syms.iter().enumerate() {
            if i % 256 == 0 {
                markers.push((image.len() - names) as u32);
            }
            let full = [&[*k][..], n.as_bytes()].concat();
            let mut comp = Vec::new();
            let mut j = 0;
            while j < full.len() {
                if full[j..].starts_with(b"_x") {
                    comp.push(1);
                    j += 2;
                } else {
                    comp.push(full[j]);
                    j += 1;
                }
            }
            if comp.len() > 0x7f {
                image.push((comp.len() as u8 & 0x7f) | 0x80);
                image.push((comp.len() >> 7) as u8);
            } else {
                image.push(comp.len() as u8);
            }
            image.extend_from_slice(&comp);
        }
        pad4(&mut image);
        for m in markers {
            image.extend_from_slice(&m.to_le_bytes());
        }
        let table = image.len();
        let mut index = Vec::new();
        for t in &tokens {
            index.push((image.len() - table) as u16);
            image.extend_from_slice(t);
            image.push(0);
        }
        pad4(&mut image);
        for i in index {
            image.extend_from_slice(&i.to_le_bytes());
        }
        for (addr, _, _) in syms {
            let slot = BASE + image.len() as u64;
            let rel = addr.wrapping_sub(slot) as i64;
            image.extend_from_slice(&(rel as i32).to_le_bytes());
        }
        image.extend_from_slice(&[0xaa; 64]);
        Built { image }
    }

    fn many(n: usize) -> Vec<(u64, u8, std::string::String)> {
        (0..n)
            .map(|i| {
                let name = if i % 97 == 0 { format!("_x_long_{}_{}", "r".repeat(150), i) } else { format!("sym_x{i}") };
                // `?` as nm types linker symbols like __nosave_begin.
                let kind = match i % 3 {
                    _ if i % 50 == 7 => b'?',
                    0 => b'T',
                    _ => b'd',
                };
                (BASE + 0x1000 + i as u64 * 16, kind, name)
            })
            .collect()
    }

    fn decode(k: &Kallsyms<'_>) -> Vec<(u64, u8, Vec<u8>)> {
        let mut out = Vec::new();
        k.for_each(|s| {
            out.push((s.addr, s.kind, s.name.to_vec()));
            ControlFlow::Continue(())
        })
        .unwrap();
        out
    }

    #[test]
    fn finds_and_decodes_every_symbol() {
        for (n, lead) in [(1usize, 0usize), (255, 3), (256, 5), (257, 1), (1000, 4096)] {
            let syms = many(n);
            let refs: Vec<(u64, u8, &str)> = syms.iter().map(|(a, k, s)| (*a, *k, s.as_str())).collect();
            let b = build(&refs, lead);
            let k = Kallsyms::find(&b.image, BASE).unwrap();
            assert_eq!(k.len() as usize, n);
            let got = decode(&k);
            assert_eq!(got.len(), n);
            for (g, (addr, kind, name)) in got.iter().zip(&syms) {
                assert_eq!((g.0, g.1, g.2.as_slice()), (*addr, *kind, name.as_bytes()));
            }
            assert_eq!(k.address_of(syms[n - 1].2.as_bytes()), Some(syms[n - 1].0));
            assert_eq!(k.address_of(b"no_such_symbol"), None);
        }
    }

    fn image_of(n: usize) -> (Vec<(u64, u8, std::string::String)>, Vec<u8>) {
        let syms = many(n);
        let refs: Vec<(u64, u8, &str)> = syms.iter().map(|(a, k, s)| (*a, *k, s.as_str())).collect();
        let img = build(&refs, 64).image;
        (syms, img)
    }

    /// Where `needle` is in `hay`.
    fn at(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).position(|w| w == needle).unwrap()
    }

    #[test]
    fn no_tables_no_symbols() {
        assert_eq!(Kallsyms::find(&[0u8; 8192], BASE).unwrap_err(), KallsymsError::NotFound);
        // The digits alone are not a token table.
        let mut img = vec![0u8; 4096];
        img[100..120].copy_from_slice(DIGITS);
        assert_eq!(Kallsyms::find(&img, BASE).unwrap_err(), KallsymsError::NotFound);
    }

    #[test]
    fn damaged_tables_are_refused_not_misread() {
        let (_, img) = image_of(600);
        // A marker that does not match its entry.
        let mut bad = img.clone();
        let zero = at(&bad, DIGITS);
        let (t, _) = Kallsyms::token_table_at(&bad, zero).unwrap();
        let m1 = t - 3 * 4 + 4; // markers[1] of 3
        let v = u32::from_le_bytes(bad[m1..m1 + 4].try_into().unwrap());
        bad[m1..m1 + 4].copy_from_slice(&(v + 1).to_le_bytes());
        assert_eq!(Kallsyms::find(&bad, BASE).unwrap_err(), KallsymsError::NoNames);
        // A wrong symbol count.
        let mut bad = img.clone();
        let n_at = 64;
        bad[n_at..n_at + 4].copy_from_slice(&601u32.to_le_bytes());
        assert!(Kallsyms::find(&bad, BASE).is_err());
        // A token index entry off by one.
        let mut bad = img.clone();
        let (_, idx) = Kallsyms::token_table_at(&bad, zero).unwrap();
        bad[idx + 2 * 0x41] ^= 1;
        assert_eq!(Kallsyms::find(&bad, BASE).unwrap_err(), KallsymsError::NotFound);
        // Addresses out of order.
        let mut bad = img.clone();
        let offsets = idx + 512;
        bad[offsets + 4..offsets + 8].copy_from_slice(&(-0x100000i32).to_le_bytes());
        assert_eq!(Kallsyms::find(&bad, BASE).unwrap_err(), KallsymsError::Corrupt);
        // Cut short: the offsets are not all there.
        assert!(Kallsyms::find(&img[..offsets + 100], BASE).is_err());
    }

    #[test]
    fn every_truncation_and_byte_flip_is_safe() {
        let (_, img) = image_of(300);
        for cut in (0..img.len()).step_by(211) {
            let _ = Kallsyms::find(&img[..cut], BASE);
        }
        let mut x = 0x1234_5678u32;
        for _ in 0..300 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut bad = img.clone();
            let i = x as usize % bad.len();
            bad[i] = (x >> 8) as u8;
            if let Ok(k) = Kallsyms::find(&bad, BASE) {
                let _ = decode(&k);
            }
        }
    }
}
