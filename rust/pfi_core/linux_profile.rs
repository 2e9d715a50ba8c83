// SPDX-License-Identifier: GPL-2.0

//! The Linux x86-64 guest profile: the structure offsets and symbol
//! addresses the walks of [`super::linux_walk`] read, resolved from the
//! guest kernel's BTF ([`super::btf`]) and its symbol table
//! ([`super::ksyms`]), and its text form.
//!
//! Text form (version 1), one item a line, `#` comments and blank lines
//! ignored, every [`FIELDS`] and every required [`SYMBOLS`] entry present
//! exactly once, in any order:
//!
//! ```text
//! kvm-pfi-linux-profile 1
//! field task_struct.tasks 1328 16      # STRUCT.MEMBER byte-offset byte-size
//! symbol init_task 0xffffffff82812ac0  # NAME address (hex)
//! ```
//!
//! Symbol addresses are as the table they came from gives them: link-time
//! for a `System.map` (a walk adds the KASLR slide), run-time for a
//! `/proc/kallsyms` read by root (slide 0). Nothing here allocates.

use super::btf::{Btf, BtfError, Shape};
use super::ksyms::{self, SymsError};
use core::fmt;

/// The first line of the text form.
pub const HEADER: &str = "kvm-pfi-linux-profile 1";

/// What a member's type must be for the walks to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A pointer.
    Ptr,
    /// An integer (or enum) of 1 to 8 bytes.
    Int,
    /// An array of this many bytes (`comm`).
    Bytes(u32),
    /// An array of pointer-sized words (maple node slots and pivots).
    Words,
    /// A struct or union embedded by value.
    Embedded,
}

/// Every member a walk reads: (struct, member, expected type).
pub const FIELDS: [(&str, &str, Expect); 40] = [
    ("list_head", "next", Expect::Ptr),
    ("list_head", "prev", Expect::Ptr),
    ("task_struct", "tasks", Expect::Embedded),
    ("task_struct", "pid", Expect::Int),
    ("task_struct", "tgid", Expect::Int),
    ("task_struct", "comm", Expect::Bytes(16)),
    ("task_struct", "mm", Expect::Ptr),
    ("task_struct", "real_parent", Expect::Ptr),
    ("task_struct", "flags", Expect::Int),
    ("mm_struct", "pgd", Expect::Ptr),
    ("mm_struct", "mm_mt", Expect::Embedded),
    ("mm_struct", "start_code", Expect::Int),
    ("mm_struct", "end_code", Expect::Int),
    ("mm_struct", "start_brk", Expect::Int),
    ("mm_struct", "brk", Expect::Int),
    ("mm_struct", "start_stack", Expect::Int),
    ("mm_struct", "arg_start", Expect::Int),
    ("mm_struct", "exe_file", Expect::Ptr),
    ("vm_area_struct", "vm_start", Expect::Int),
    ("vm_area_struct", "vm_end", Expect::Int),
    ("vm_area_struct", "vm_flags", Expect::Int),
    ("vm_area_struct", "vm_file", Expect::Ptr),
    ("vm_area_struct", "vm_pgoff", Expect::Int),
    ("vm_area_struct", "vm_mm", Expect::Ptr),
    ("file", "f_path", Expect::Embedded),
    ("path", "dentry", Expect::Ptr),
    ("dentry", "d_name", Expect::Embedded),
    ("dentry", "d_parent", Expect::Ptr),
    ("qstr", "name", Expect::Ptr),
    ("qstr", "len", Expect::Int),
    ("maple_tree", "ma_root", Expect::Ptr),
    ("maple_tree", "ma_flags", Expect::Int),
    ("maple_range_64", "parent", Expect::Ptr),
    ("maple_range_64", "pivot", Expect::Words),
    ("maple_range_64", "slot", Expect::Words),
    ("maple_range_64", "meta", Expect::Embedded),
    ("maple_arange_64", "pivot", Expect::Words),
    ("maple_arange_64", "slot", Expect::Words),
    ("maple_arange_64", "meta", Expect::Embedded),
    ("maple_metadata", "end", Expect::Int),
];

/// Names of the [`FIELDS`] entries, for [`Profile::field`].
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum F {
    ListNext,
    ListPrev,
    TaskTasks,
    TaskPid,
    TaskTgid,
    TaskComm,
    TaskMm,
    TaskRealParent,
    TaskFlags,
    MmPgd,
    MmMt,
    MmStartCode,
    MmEndCode,
    MmStartBrk,
    MmBrk,
    MmStartStack,
    MmArgStart,
    MmExeFile,
    VmaStart,
    VmaEnd,
    VmaFlags,
    VmaFile,
    VmaPgoff,
    VmaMm,
    FilePath,
    PathDentry,
    DentryName,
    DentryParent,
    QstrName,
    QstrLen,
    MtRoot,
    MtFlags,
    Mr64Parent,
    Mr64Pivot,
    Mr64Slot,
    Mr64Meta,
    Ma64Pivot,
    Ma64Slot,
    Ma64Meta,
    MetaEnd,
}

/// Symbols: (name, required).
pub const SYMBOLS: [(&str, bool); 7] = [
    ("init_task", true),
    ("_text", true),
    ("init_mm", false),
    ("current_task", false),
    ("__per_cpu_offset", false),
    ("entry_SYSCALL_64", false),
    ("page_offset_base", false),
];

/// Names of the [`SYMBOLS`] entries, for [`Profile::symbol`].
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum S {
    InitTask,
    Text,
    InitMm,
    CurrentTask,
    PerCpuOffset,
    EntrySyscall64,
    PageOffsetBase,
}

/// Where a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Field {
    /// Byte offset from the start of its struct.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// The offsets and symbols of one guest kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    fields: [Field; FIELDS.len()],
    symbols: [Option<u64>; SYMBOLS.len()],
}

/// Why no profile was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileError {
    /// The BTF blob is malformed, or a look-up in it failed at [`FIELDS`]
    /// entry `.1` (`usize::MAX`: before any).
    Btf(BtfError, usize),
    /// [`FIELDS`] entry has a type the walks cannot read (a bitfield, a
    /// pointer where an integer was expected, ...).
    Shape(usize),
    /// The symbol table is malformed.
    Syms(SymsError),
    /// A required [`SYMBOLS`] entry is missing.
    MissingSymbol(usize),
    /// Text form: line (from 1) is malformed, unknown, or repeats an item.
    Line(usize),
    /// Text form: not the [`HEADER`] first.
    Header,
    /// Text form: [`FIELDS`] entry never given.
    MissingField(usize),
    /// The maple node layout does not fit the walk (slots past 256 bytes,
    /// fewer slots than pivots plus one, ...).
    MapleLayout,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = |i: usize| FIELDS.get(i).map(|e| (e.0, e.1)).unwrap_or(("?", "?"));
        match *self {
            ProfileError::Btf(e, i) if i == usize::MAX => write!(f, "BTF: {:?}", e),
            ProfileError::Btf(e, i) => {
                let (s, m) = field(i);
                write!(f, "BTF: {:?} looking up {}.{}", e, s, m)
            }
            ProfileError::Shape(i) => {
                let (s, m) = field(i);
                write!(f, "{}.{} has a type the walks cannot read", s, m)
            }
            ProfileError::Syms(SymsError::BadLine(n)) => write!(f, "symbol table: line {} is not ADDRESS TYPE NAME", n),
            ProfileError::Syms(SymsError::AddressesHidden) => {
                write!(f, "symbol table: every address is 0 (kallsyms read without privilege?)")
            }
            ProfileError::MissingSymbol(i) => {
                write!(f, "symbol {} is missing", SYMBOLS.get(i).map(|s| s.0).unwrap_or("?"))
            }
            ProfileError::Line(n) => write!(f, "profile line {}: malformed, unknown or repeated", n),
            ProfileError::Header => write!(f, "not a profile: the first line must be `{}`", HEADER),
            ProfileError::MissingField(i) => {
                let (s, m) = field(i);
                write!(f, "profile has no field {}.{}", s, m)
            }
            ProfileError::MapleLayout => write!(f, "maple node layout does not fit a 256-byte node"),
        }
    }
}

/// Bytes of a maple node (`struct maple_node`, 64-bit).
pub const MAPLE_NODE_BYTES: u32 = 256;

impl Profile {
    /// Where member `f` is.
    pub fn field(&self, f: F) -> Field {
        self.fields.get(f as usize).copied().unwrap_or_default()
    }

    /// The address of symbol `s`, if the table had it.
    pub fn symbol(&self, s: S) -> Option<u64> {
        self.symbols.get(s as usize).copied().flatten()
    }

    /// Resolves every [`FIELDS`] entry in `btf` and every [`SYMBOLS`]
    /// entry in the symbol table text `syms` (System.map or kallsyms).
    pub fn resolve(btf: &[u8], syms: &[u8]) -> Result<Profile, ProfileError> {
        let btf = Btf::parse(btf).map_err(|e| ProfileError::Btf(e, usize::MAX))?;
        let mut fields = [Field::default(); FIELDS.len()];
        for (i, ((s, m, expect), out)) in FIELDS.iter().zip(fields.iter_mut()).enumerate() {
            let err = |e| ProfileError::Btf(e, i);
            let agg = btf.find_aggregate(s).map_err(err)?;
            let mem = btf.member(&agg, m).map_err(err)?;
            if mem.bitfield_size != 0 || mem.bit_offset % 8 != 0 {
                return Err(ProfileError::Shape(i));
            }
            let size = btf.size_of(mem.type_id).map_err(err)?;
            let shape = btf.shape(mem.type_id).map_err(err)?;
            let ok = match (expect, shape) {
                (Expect::Ptr, Shape::Pointer) => true,
                (Expect::Int, Shape::Int(n)) => matches!(n, 1 | 2 | 4 | 8),
                (Expect::Bytes(n), Shape::Array(_, _)) => size == u64::from(*n),
                (Expect::Words, Shape::Array(elem, _)) => btf.size_of(elem).map_err(err)? == 8,
                (Expect::Embedded, Shape::Aggregate(_)) => true,
                _ => false,
            };
            if !ok {
                return Err(ProfileError::Shape(i));
            }
            *out = Field {
                offset: u32::try_from(mem.bit_offset / 8).map_err(|_| ProfileError::Shape(i))?,
                size: u32::try_from(size).map_err(|_| ProfileError::Shape(i))?,
            };
        }
        let mut symbols = [None; SYMBOLS.len()];
        let names = SYMBOLS.map(|s| s.0);
        ksyms::lookup(syms, &names, &mut symbols).map_err(ProfileError::Syms)?;
        let p = Profile { fields, symbols };
        p.check()?;
        Ok(p)
    }

    /// The checks every profile passes, whatever its source.
    fn check(&self) -> Result<(), ProfileError> {
        for (i, (_, required)) in SYMBOLS.iter().enumerate() {
            if *required && self.symbols.get(i).copied().flatten().is_none() {
                return Err(ProfileError::MissingSymbol(i));
            }
        }
        let end = |f: Field| f.offset.checked_add(f.size);
        let words = |f: Field| f.size / 8;
        let fits = [F::Mr64Parent, F::Mr64Pivot, F::Mr64Slot, F::Ma64Pivot, F::Ma64Slot]
            .iter()
            .all(|&f| end(self.field(f)).is_some_and(|e| e <= MAPLE_NODE_BYTES));
        let meta = [F::Mr64Meta, F::Ma64Meta].iter().all(|&m| {
            self.field(m)
                .offset
                .checked_add(self.field(F::MetaEnd).offset)
                .is_some_and(|o| o < MAPLE_NODE_BYTES)
        });
        let r = (words(self.field(F::Mr64Pivot)), words(self.field(F::Mr64Slot)));
        let a = (words(self.field(F::Ma64Pivot)), words(self.field(F::Ma64Slot)));
        // The range_64 metadata (its end) lives in the last slot word.
        if !fits || !meta || r.1 != r.0.wrapping_add(1) || a.1 != a.0.wrapping_add(1) || r.0 == 0 || a.0 == 0 {
            return Err(ProfileError::MapleLayout);
        }
        Ok(())
    }

    /// Parses the text form.
    pub fn parse(text: &[u8]) -> Result<Profile, ProfileError> {
        let mut fields = [None::<Field>; FIELDS.len()];
        let mut symbols = [None; SYMBOLS.len()];
        let mut seen_header = false;
        for (i, raw) in text.split(|&c| c == b'\n').enumerate() {
            let n = i.saturating_add(1);
            let line = raw.split(|&c| c == b'#').next().unwrap_or_default();
            let mut words = line
                .split(|&c| c == b' ' || c == b'\t' || c == b'\r')
                .filter(|w| !w.is_empty());
            let Some(first) = words.next() else { continue };
            if !seen_header {
                if first != b"kvm-pfi-linux-profile" || words.next() != Some(b"1") || words.next().is_some() {
                    return Err(ProfileError::Header);
                }
                seen_header = true;
                continue;
            }
            let bad = ProfileError::Line(n);
            let name = words.next().ok_or(bad)?;
            match first {
                b"field" => {
                    let dot = name.iter().position(|&c| c == b'.').ok_or(bad)?;
                    let (s, m) = (name.get(..dot).ok_or(bad)?, name.get(dot.wrapping_add(1)..).ok_or(bad)?);
                    let idx = FIELDS
                        .iter()
                        .position(|e| e.0.as_bytes() == s && e.1.as_bytes() == m)
                        .ok_or(bad)?;
                    let offset = words.next().and_then(parse_dec).ok_or(bad)?;
                    let size = words.next().and_then(parse_dec).ok_or(bad)?;
                    let slot = fields.get_mut(idx).ok_or(bad)?;
                    if words.next().is_some() || slot.is_some() {
                        return Err(bad);
                    }
                    *slot = Some(Field { offset, size });
                }
                b"symbol" => {
                    let idx = SYMBOLS.iter().position(|e| e.0.as_bytes() == name).ok_or(bad)?;
                    let v = words.next().ok_or(bad)?;
                    let v = v.strip_prefix(b"0x").and_then(ksyms::parse_hex).ok_or(bad)?;
                    let slot = symbols.get_mut(idx).ok_or(bad)?;
                    if words.next().is_some() || slot.is_some() {
                        return Err(bad);
                    }
                    *slot = Some(v);
                }
                _ => return Err(bad),
            }
        }
        if !seen_header {
            return Err(ProfileError::Header);
        }
        let mut out = [Field::default(); FIELDS.len()];
        for (i, (o, f)) in out.iter_mut().zip(fields.iter()).enumerate() {
            *o = f.ok_or(ProfileError::MissingField(i))?;
        }
        let p = Profile { fields: out, symbols };
        p.check()?;
        Ok(p)
    }
}

/// The text form ([`Profile::parse`] reads it back unchanged).
impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", HEADER)?;
        for ((s, m, _), v) in FIELDS.iter().zip(self.fields.iter()) {
            writeln!(f, "field {}.{} {} {}", s, m, v.offset, v.size)?;
        }
        for ((s, _), v) in SYMBOLS.iter().zip(self.symbols.iter()) {
            if let Some(v) = v {
                writeln!(f, "symbol {} {:#x}", s, v)?;
            }
        }
        Ok(())
    }
}

/// A decimal `u32`.
fn parse_dec(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut v: u32 = 0;
    for &c in s {
        let d = char::from(c).to_digit(10)?;
        v = v.checked_mul(10)?.checked_add(d)?;
    }
    Some(v)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::string::ToString;

    /// The BTF of the test kernel (Linux 7.3.4, its `x86_64` test config),
    /// cut to the types [`FIELDS`] names (scripts/btf-cut.py).
    pub(crate) const BTF: &[u8] = include_bytes!("tests/fixtures/linux-7.3-btf-cut.bin");
    const MAP: &[u8] = include_bytes!("tests/fixtures/linux-7.3-System.map");

    #[test]
    fn resolves_the_test_kernel() {
        let p = Profile::resolve(BTF, MAP).unwrap();
        // The offsets `pahole -C` prints for the test kernel's vmlinux.
        let f = |x| {
            let v = p.field(x);
            (v.offset, v.size)
        };
        assert_eq!(f(F::TaskTasks), (1328, 16));
        assert_eq!(f(F::TaskPid), (1536, 4));
        assert_eq!(f(F::TaskTgid), (1540, 4));
        assert_eq!(f(F::TaskComm), (2184, 16));
        assert_eq!(f(F::TaskMm), (1408, 8));
        assert_eq!(f(F::TaskRealParent), (1552, 8));
        assert_eq!(f(F::TaskFlags), (44, 4));
        assert_eq!(f(F::MmMt), (64, 80));
        assert_eq!(f(F::MmPgd), (184, 8));
        assert_eq!(f(F::MmStartCode), (1360, 8));
        assert_eq!(f(F::MmStartBrk), (1392, 8));
        assert_eq!(f(F::MmBrk), (1400, 8));
        assert_eq!(f(F::MmStartStack), (1408, 8));
        assert_eq!(f(F::MmArgStart), (1416, 8));
        assert_eq!(f(F::MmExeFile), (2728, 8));
        // vm_start/vm_end in a struct in a union, vm_flags in a union.
        assert_eq!(f(F::VmaStart), (0, 8));
        assert_eq!(f(F::VmaEnd), (8, 8));
        assert_eq!(f(F::VmaMm), (16, 8));
        assert_eq!(f(F::VmaFlags), (32, 8));
        assert_eq!(f(F::VmaPgoff), (80, 8));
        assert_eq!(f(F::VmaFile), (88, 8));
        assert_eq!(f(F::FilePath), (128, 16));
        assert_eq!(f(F::DentryParent), (80, 8));
        assert_eq!(f(F::DentryName), (88, 16));
        // qstr.len: in a struct in a union.
        assert_eq!(f(F::QstrLen), (4, 4));
        assert_eq!(f(F::QstrName), (8, 8));
        assert_eq!(f(F::MtRoot), (72, 8));
        assert_eq!(f(F::Mr64Pivot), (8, 120));
        assert_eq!(f(F::Mr64Slot), (128, 128));
        assert_eq!(f(F::Mr64Meta), (248, 2));
        assert_eq!(f(F::Ma64Pivot), (8, 72));
        assert_eq!(f(F::Ma64Slot), (80, 80));
        assert_eq!(f(F::Ma64Meta), (240, 2));
        assert_eq!(p.symbol(S::InitTask), Some(0xffffffff82812ac0));
        assert_eq!(p.symbol(S::Text), Some(0xffffffff81000000));
    }

    #[test]
    fn text_form_round_trips_and_refuses_damage() {
        let p = Profile::resolve(BTF, MAP).unwrap();
        let text = p.to_string();
        assert!(text.starts_with("kvm-pfi-linux-profile 1\nfield list_head.next 0 8\n"));
        assert_eq!(Profile::parse(text.as_bytes()).unwrap(), p);
        let commented = std::format!("# made by hand\n\n{}# end\n", text.replace('\n', "  # c\n"));
        assert_eq!(Profile::parse(commented.as_bytes()).unwrap(), p);
        assert_eq!(Profile::parse(b"").err(), Some(ProfileError::Header));
        assert_eq!(Profile::parse(b"kvm-pfi-linux-profile 2\n").err(), Some(ProfileError::Header));
        // Every line removed, repeated or changed is refused, or gives a
        // profile that differs (an optional symbol).
        let lines: std::vec::Vec<&str> = text.lines().collect();
        for i in 1..lines.len() {
            let mut v = lines.clone();
            v.remove(i);
            let r = Profile::parse(v.join("\n").as_bytes());
            assert!(r.as_ref().map_or(true, |q| *q != p), "line {} removed", i);
            let mut v = lines.clone();
            v.insert(i, lines[i]);
            assert_eq!(Profile::parse(v.join("\n").as_bytes()).err(), Some(ProfileError::Line(i + 2)));
            let mut v = lines.clone();
            let bad = std::format!("{} extra", lines[i]);
            v[i] = &bad;
            assert_eq!(Profile::parse(v.join("\n").as_bytes()).err(), Some(ProfileError::Line(i + 1)));
        }
        let bad = text.replace("field maple_range_64.slot 128 128", "field maple_range_64.slot 200 128");
        assert_eq!(Profile::parse(bad.as_bytes()).err(), Some(ProfileError::MapleLayout));
        let bad = text.replace("symbol init_task 0x", "symbol init_task 0xg");
        assert!(matches!(Profile::parse(bad.as_bytes()), Err(ProfileError::Line(_))));
    }

    #[test]
    fn a_profile_needs_its_symbols_and_types() {
        let no_init = b"ffffffff81000000 T _text\n";
        assert_eq!(Profile::resolve(BTF, no_init).err(), Some(ProfileError::MissingSymbol(0)));
        assert!(matches!(Profile::resolve(&BTF[..100], MAP), Err(ProfileError::Btf(_, _))));
        // The first FIELDS entry's struct is absent from a blob with other types only.
        let mut b = super::super::btf::tests::Builder::new();
        b.int("int", 4);
        assert_eq!(
            Profile::resolve(&b.build(), MAP).err(),
            Some(ProfileError::Btf(BtfError::NoSuchType, 0))
        );
    }
}
