// SPDX-License-Identifier: GPL-2.0

//! A reader of BTF, the kernel's own type information
//! (`/sys/kernel/btf/vmlinux`, the `.BTF` section of a vmlinux, or the blob
//! found in a guest's memory), enough to find the offset of a member of a
//! named struct or union, through anonymous structs and unions.
//!
//! The format is `Documentation/bpf/btf.rst`: a header, a type section of
//! variable-length records (type ids count from 1 in record order), and a
//! string section of NUL-terminated names. Every offset, length and id of
//! the input is checked: a hostile blob gives an error, never a panic or
//! an out-of-bounds read. Nothing is allocated: looking a type up by id
//! scans the records (a vmlinux has about 10^5; a profile needs a few
//! dozen look-ups).

use super::le::{le16, le32};

/// `BTF_MAGIC`.
pub const MAGIC: u16 = 0xeb9f;
/// The bound on anonymous struct/union nesting followed by a member
/// search, and on typedef/modifier chains (the kernel has a few levels).
pub const MAX_NESTING: u32 = 16;
/// Header-like words [`Btf::find_in_image`] follows at most.
pub const MAX_BLOB_CANDIDATES: usize = 64;

/// Why a blob or a look-up was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BtfError {
    /// Shorter than its header, or a section outside the blob.
    Truncated,
    /// Not `BTF_MAGIC` in little-endian order (big-endian BTF is not read).
    BadMagic,
    /// A version other than 1, or a header length below 24.
    BadHeader,
    /// A type record of an unknown kind, or cut by the section's end.
    BadType,
    /// A type id beyond the last record.
    BadId,
    /// A name offset outside the string section, or not NUL-terminated.
    BadString,
    /// No complete struct or union of that name.
    NoSuchType,
    /// The struct has no member of that name, even inside anonymous ones.
    NoSuchMember,
    /// Typedef or anonymous-member nesting deeper than [`MAX_NESTING`].
    TooDeep,
}

/// BTF kinds (`BTF_KIND_*`).
#[allow(missing_docs)]
pub mod kind {
    pub const INT: u8 = 1;
    pub const PTR: u8 = 2;
    pub const ARRAY: u8 = 3;
    pub const STRUCT: u8 = 4;
    pub const UNION: u8 = 5;
    pub const ENUM: u8 = 6;
    pub const FWD: u8 = 7;
    pub const TYPEDEF: u8 = 8;
    pub const VOLATILE: u8 = 9;
    pub const CONST: u8 = 10;
    pub const RESTRICT: u8 = 11;
    pub const FUNC: u8 = 12;
    pub const FUNC_PROTO: u8 = 13;
    pub const VAR: u8 = 14;
    pub const DATASEC: u8 = 15;
    pub const FLOAT: u8 = 16;
    pub const DECL_TAG: u8 = 17;
    pub const TYPE_TAG: u8 = 18;
    pub const ENUM64: u8 = 19;
}

/// A parsed, bounds-checked BTF blob.
#[derive(Clone, Copy)]
pub struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
}

/// One type record.
#[derive(Debug, Clone, Copy)]
pub struct Type<'a> {
    /// Its id (the first record is 1).
    pub id: u32,
    /// `BTF_KIND_*`.
    pub kind: u8,
    /// The kind flag (bitfield member offsets for structs and unions).
    pub kflag: bool,
    /// Members, enumerators or parameters.
    pub vlen: u16,
    /// Offset of the name in the string section (0: anonymous).
    pub name_off: u32,
    /// The size (int, struct, union, enum, datasec, float) or the type id
    /// referred to (ptr, typedef, modifiers, func, var).
    pub size_or_type: u32,
    /// The kind-specific bytes after the 12-byte common record.
    pub extra: &'a [u8],
}

/// A member of a struct or union, its offset relative to the outermost
/// struct a search started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Type id of the member.
    pub type_id: u32,
    /// Offset in bits.
    pub bit_offset: u64,
    /// Bitfield width, 0 for an ordinary member.
    pub bitfield_size: u32,
}

/// What a (typedef/modifier-stripped) type is, as far as a profile cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An integer or enum of that many bytes.
    Int(u32),
    /// A pointer.
    Pointer,
    /// An array: element type id, element count.
    Array(u32, u32),
    /// A struct or union of that many bytes.
    Aggregate(u32),
    /// Anything else (functions, forward declarations, void).
    Other,
}

/// Bytes after the common record for a kind with `vlen` entries.
fn extra_len(kind: u8, vlen: u16) -> Option<usize> {
    let n = usize::from(vlen);
    Some(match kind {
        kind::INT | kind::VAR | kind::DECL_TAG => 4,
        kind::ARRAY => 12,
        kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => n.checked_mul(12)?,
        kind::ENUM | kind::FUNC_PROTO => n.checked_mul(8)?,
        kind::PTR
        | kind::FWD
        | kind::TYPEDEF
        | kind::VOLATILE
        | kind::CONST
        | kind::RESTRICT
        | kind::FUNC
        | kind::FLOAT
        | kind::TYPE_TAG => 0,
        _ => return None,
    })
}

impl<'a> Btf<'a> {
    /// Checks the header and the section bounds of `blob`.
    pub fn parse(blob: &'a [u8]) -> Result<Self, BtfError> {
        let magic = le16(blob, 0).ok_or(BtfError::Truncated)?;
        if magic != MAGIC {
            return Err(BtfError::BadMagic);
        }
        let version = blob.get(2).copied().ok_or(BtfError::Truncated)?;
        let hdr_len = le32(blob, 4).ok_or(BtfError::Truncated)?;
        if version != 1 || hdr_len < 24 {
            return Err(BtfError::BadHeader);
        }
        let field = |off| le32(blob, off).ok_or(BtfError::Truncated);
        let (type_off, type_len) = (field(8)?, field(12)?);
        let (str_off, str_len) = (field(16)?, field(20)?);
        let section = |off: u32, len: u32| -> Result<&'a [u8], BtfError> {
            let start = usize::try_from(hdr_len)
                .ok()
                .and_then(|h| h.checked_add(usize::try_from(off).ok()?))
                .ok_or(BtfError::Truncated)?;
            let end = start
                .checked_add(usize::try_from(len).map_err(|_| BtfError::Truncated)?)
                .ok_or(BtfError::Truncated)?;
            blob.get(start..end).ok_or(BtfError::Truncated)
        };
        Ok(Btf {
            types: section(type_off, type_len)?,
            strings: section(str_off, str_len)?,
        })
    }

    /// The kernel's BTF in a copy of its image's memory (the `.BTF`
    /// section, between `__start_BTF` and `__stop_BTF`, which nothing
    /// names in memory): the first 4-byte aligned header of version 1 and
    /// flags 0 whose sections are in the image and whose blob parses and
    /// has a `struct task_struct`. Returns the blob. Every candidate costs
    /// a scan of its type records: at most `MAX_BLOB_CANDIDATES` are tried.
    pub fn find_in_image(image: &'a [u8]) -> Option<&'a [u8]> {
        let mut tried = 0usize;
        let mut at = 0usize;
        while tried < MAX_BLOB_CANDIDATES {
            let rest = image.get(at..)?;
            let hit = rest.chunks_exact(4).position(|w| w == [0x9f, 0xeb, 1, 0])?;
            let start = at.checked_add(hit.checked_mul(4)?)?;
            at = start.checked_add(4)?;
            let Some(blob) = image.get(start..).and_then(Self::blob_at) else { continue };
            tried = tried.saturating_add(1);
            if Btf::parse(blob).is_ok_and(|b| b.find_aggregate("task_struct").is_ok()) {
                return Some(blob);
            }
        }
        None
    }

    /// The blob a header at `b[0]` spans: header, types and strings.
    fn blob_at(b: &'a [u8]) -> Option<&'a [u8]> {
        let field = |off| le32(b, off).and_then(|v| usize::try_from(v).ok());
        let hdr_len = field(4)?;
        if !(24..=256).contains(&hdr_len) {
            return None;
        }
        let types_end = field(8)?.checked_add(field(12)?)?;
        let strings_end = field(16)?.checked_add(field(20)?)?;
        b.get(..hdr_len.checked_add(types_end.max(strings_end))?)
    }

    /// The records in id order; a malformed record ends the iteration with
    /// one `Err`.
    pub fn types(&self) -> Types<'a> {
        Types {
            rest: self.types,
            next_id: 1,
            failed: false,
        }
    }

    /// The record of `id` (a scan: O(number of types)).
    pub fn type_by_id(&self, id: u32) -> Result<Type<'a>, BtfError> {
        if id == 0 {
            return Err(BtfError::BadId); // void has no record
        }
        for t in self.types() {
            let t = t?;
            if t.id == id {
                return Ok(t);
            }
        }
        Err(BtfError::BadId)
    }

    /// The name at `off` of the string section, without its NUL.
    pub fn name(&self, off: u32) -> Result<&'a [u8], BtfError> {
        let rest = usize::try_from(off)
            .ok()
            .and_then(|o| self.strings.get(o..))
            .ok_or(BtfError::BadString)?;
        let end = rest
            .iter()
            .position(|&c| c == 0)
            .ok_or(BtfError::BadString)?;
        rest.get(..end).ok_or(BtfError::BadString)
    }

    /// The first complete (not forward-declared) struct or union called
    /// `name`.
    pub fn find_aggregate(&self, name: &str) -> Result<Type<'a>, BtfError> {
        for t in self.types() {
            let t = t?;
            if (t.kind == kind::STRUCT || t.kind == kind::UNION)
                && t.name_off != 0
                && self.name(t.name_off)? == name.as_bytes()
            {
                return Ok(t);
            }
        }
        Err(BtfError::NoSuchType)
    }

    /// Follows typedefs and const/volatile/restrict/type-tag modifiers.
    pub fn strip(&self, id: u32) -> Result<Option<Type<'a>>, BtfError> {
        let mut id = id;
        for _ in 0..MAX_NESTING {
            if id == 0 {
                return Ok(None); // void
            }
            let t = self.type_by_id(id)?;
            match t.kind {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return Ok(Some(t)),
            }
        }
        Err(BtfError::TooDeep)
    }

    /// What type `id` is, after [`Btf::strip`].
    pub fn shape(&self, id: u32) -> Result<Shape, BtfError> {
        let Some(t) = self.strip(id)? else {
            return Ok(Shape::Other);
        };
        Ok(match t.kind {
            kind::INT | kind::ENUM | kind::ENUM64 => Shape::Int(t.size_or_type),
            kind::PTR => Shape::Pointer,
            kind::ARRAY => {
                let elem = le32(t.extra, 0).ok_or(BtfError::BadType)?;
                let n = le32(t.extra, 8).ok_or(BtfError::BadType)?;
                Shape::Array(elem, n)
            }
            kind::STRUCT | kind::UNION => Shape::Aggregate(t.size_or_type),
            _ => Shape::Other,
        })
    }

    /// The size in bytes of type `id` (arrays: element size times count).
    pub fn size_of(&self, id: u32) -> Result<u64, BtfError> {
        let mut id = id;
        let mut mult: u64 = 1;
        for _ in 0..MAX_NESTING {
            match self.shape(id)? {
                Shape::Int(s) | Shape::Aggregate(s) => {
                    return mult.checked_mul(u64::from(s)).ok_or(BtfError::BadType);
                }
                Shape::Pointer => return mult.checked_mul(8).ok_or(BtfError::BadType),
                Shape::Array(elem, n) => {
                    mult = mult.checked_mul(u64::from(n)).ok_or(BtfError::BadType)?;
                    id = elem;
                }
                Shape::Other => return Ok(0),
            }
        }
        Err(BtfError::TooDeep)
    }

    /// The member `name` of struct or union `agg`, searched in declaration
    /// order, descending into anonymous struct and union members (C's
    /// rule: their members are members of the enclosing one). The offset
    /// is relative to `agg`.
    pub fn member(&self, agg: &Type<'a>, name: &str) -> Result<Member, BtfError> {
        self.member_in(agg, name.as_bytes(), 0, 0)?
            .ok_or(BtfError::NoSuchMember)
    }

    fn member_in(
        &self,
        agg: &Type<'a>,
        name: &[u8],
        base_bits: u64,
        depth: u32,
    ) -> Result<Option<Member>, BtfError> {
        if depth >= MAX_NESTING {
            return Err(BtfError::TooDeep);
        }
        if agg.kind != kind::STRUCT && agg.kind != kind::UNION {
            return Err(BtfError::BadType);
        }
        for i in 0..usize::from(agg.vlen) {
            let at = i.checked_mul(12).ok_or(BtfError::BadType)?;
            let m_name = le32(agg.extra, at).ok_or(BtfError::BadType)?;
            let m_type = le32(agg.extra, at.wrapping_add(4)).ok_or(BtfError::BadType)?;
            let m_off = le32(agg.extra, at.wrapping_add(8)).ok_or(BtfError::BadType)?;
            let (bits, bitfield_size) = if agg.kflag {
                (m_off & 0x00ff_ffff, m_off >> 24)
            } else {
                (m_off, 0)
            };
            let bit_offset = base_bits
                .checked_add(u64::from(bits))
                .ok_or(BtfError::BadType)?;
            if m_name == 0 {
                // Anonymous: a struct or union whose members are ours.
                if let Some(inner) = self.strip(m_type)? {
                    if inner.kind == kind::STRUCT || inner.kind == kind::UNION {
                        if let Some(m) = self.member_in(&inner, name, bit_offset, depth.wrapping_add(1))? {
                            return Ok(Some(m));
                        }
                    }
                }
            } else if self.name(m_name)? == name {
                return Ok(Some(Member {
                    type_id: m_type,
                    bit_offset,
                    bitfield_size,
                }));
            }
        }
        Ok(None)
    }
}

/// Iterator over the type records of a [`Btf`].
pub struct Types<'a> {
    rest: &'a [u8],
    next_id: u32,
    failed: bool,
}

impl<'a> Iterator for Types<'a> {
    type Item = Result<Type<'a>, BtfError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let rec = (|| {
            let name_off = le32(self.rest, 0)?;
            let info = le32(self.rest, 4)?;
            let size_or_type = le32(self.rest, 8)?;
            let vlen = u16::try_from(info & 0xffff).ok()?;
            let kind = u8::try_from((info >> 24) & 0x1f).ok()?;
            let len = extra_len(kind, vlen)?;
            let end = len.checked_add(12)?;
            let extra = self.rest.get(12..end)?;
            let rest = self.rest.get(end..)?;
            Some((
                Type {
                    id: self.next_id,
                    kind,
                    kflag: info >> 31 != 0,
                    vlen,
                    name_off,
                    size_or_type,
                    extra,
                },
                rest,
            ))
        })();
        match rec {
            Some((t, rest)) => {
                self.rest = rest;
                self.next_id = self.next_id.wrapping_add(1);
                Some(Ok(t))
            }
            None => {
                self.failed = true;
                Some(Err(BtfError::BadType))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec::Vec;

    /// Builds a BTF blob from type records and a string section, for the
    /// hand-made cases here and in the profile's tests.
    pub(crate) struct Builder {
        pub(crate) types: Vec<u8>,
        pub(crate) strings: Vec<u8>,
        pub(crate) next_id: u32,
    }

    impl Builder {
        pub(crate) fn new() -> Self {
            Builder {
                types: Vec::new(),
                strings: std::vec![0],
                next_id: 1,
            }
        }
        pub(crate) fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }
        fn rec(&mut self, name: &str, kind: u8, kflag: bool, vlen: u16, st: u32) -> u32 {
            let n = self.s(name);
            self.types.extend_from_slice(&n.to_le_bytes());
            let info = (u32::from(kind) << 24) | u32::from(vlen) | (u32::from(kflag) << 31);
            self.types.extend_from_slice(&info.to_le_bytes());
            self.types.extend_from_slice(&st.to_le_bytes());
            let id = self.next_id;
            self.next_id += 1;
            id
        }
        pub(crate) fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.rec(name, kind::INT, false, 0, size);
            self.types.extend_from_slice(&(size * 8).to_le_bytes());
            id
        }
        pub(crate) fn ptr(&mut self, to: u32) -> u32 {
            self.rec("", kind::PTR, false, 0, to)
        }
        pub(crate) fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.rec(name, kind::TYPEDEF, false, 0, to)
        }
        pub(crate) fn array(&mut self, elem: u32, n: u32) -> u32 {
            let id = self.rec("", kind::ARRAY, false, 0, 0);
            for v in [elem, elem, n] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            id
        }
        /// Members: (name, type id, bit offset, bitfield size).
        pub(crate) fn agg(&mut self, union: bool, name: &str, size: u32, members: &[(&str, u32, u32, u32)]) -> u32 {
            let kflag = members.iter().any(|m| m.3 != 0);
            let k = if union { kind::UNION } else { kind::STRUCT };
            let id = self.rec(name, k, kflag, members.len() as u16, size);
            for &(n, t, off, bits) in members {
                let n = self.s(n);
                self.types.extend_from_slice(&n.to_le_bytes());
                self.types.extend_from_slice(&t.to_le_bytes());
                let o = if kflag { off | (bits << 24) } else { off };
                self.types.extend_from_slice(&o.to_le_bytes());
            }
            id
        }
        pub(crate) fn build(&self) -> Vec<u8> {
            let mut b = Vec::new();
            b.extend_from_slice(&MAGIC.to_le_bytes());
            b.extend_from_slice(&[1, 0]);
            for v in [24u32, 0, self.types.len() as u32, self.types.len() as u32, self.strings.len() as u32] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b.extend_from_slice(&self.types);
            b.extend_from_slice(&self.strings);
            b
        }
    }

    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        let u32t = b.int("unsigned int", 4);
        let u64t = b.int("long unsigned int", 8);
        let ul = b.typedef("vm_flags_t", u64t);
        let inner = b.agg(false, "", 8, &[("hash", u32t, 0, 0), ("len", u32t, 32, 0)]);
        let un = b.agg(true, "", 8, &[("", inner, 0, 0), ("hash_len", u64t, 0, 0)]);
        let chr = b.int("char", 1);
        let arr = b.array(chr, 16);
        let p = b.ptr(0);
        b.agg(
            false,
            "thing",
            48,
            &[
                ("", un, 0, 0),
                ("name", p, 64, 0),
                ("flags", ul, 128, 0),
                ("bits", u32t, 192, 3),
                ("comm", arr, 256, 0),
            ],
        );
        b.build()
    }

    #[test]
    fn members_through_anonymous_unions_and_typedefs() {
        let blob = sample();
        let btf = Btf::parse(&blob).unwrap();
        let t = btf.find_aggregate("thing").unwrap();
        let len = btf.member(&t, "len").unwrap();
        assert_eq!((len.bit_offset, len.bitfield_size), (32, 0));
        assert_eq!(btf.member(&t, "hash_len").unwrap().bit_offset, 0);
        assert_eq!(btf.member(&t, "name").unwrap().bit_offset, 64);
        let flags = btf.member(&t, "flags").unwrap();
        assert_eq!(btf.shape(flags.type_id).unwrap(), Shape::Int(8));
        let bits = btf.member(&t, "bits").unwrap();
        assert_eq!((bits.bit_offset, bits.bitfield_size), (192, 3));
        let comm = btf.member(&t, "comm").unwrap();
        assert_eq!(btf.size_of(comm.type_id).unwrap(), 16);
        assert_eq!(btf.member(&t, "nope"), Err(BtfError::NoSuchMember));
        assert_eq!(btf.find_aggregate("other").err(), Some(BtfError::NoSuchType));
    }

    #[test]
    fn the_kernels_blob_is_found_in_an_image() {
        // The cut of the 7.3 test kernel's BTF, as `.BTF` sits in its
        // image: after other read-only data, with decoys before it (a
        // header word that spans past the image, a valid blob without
        // task_struct).
        let real: &[u8] = include_bytes!("tests/fixtures/linux-7.3-btf-cut.bin");
        let mut image = std::vec![0x5au8; 4096];
        image[8..12].copy_from_slice(&[0x9f, 0xeb, 1, 0]);
        image[12..16].copy_from_slice(&24u32.to_le_bytes());
        image[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        let other = sample();
        let o = 256;
        image[o..o + other.len()].copy_from_slice(&other);
        let at = 2048 + 4;
        image.truncate(at);
        image.extend_from_slice(real);
        image.extend_from_slice(&[0xa5; 100]);
        let found = Btf::find_in_image(&image).unwrap();
        assert_eq!(found, real);
        // Not 4-byte aligned: not the kernel's section.
        let mut shifted = std::vec![0u8; 2];
        shifted.extend_from_slice(real);
        assert_eq!(Btf::find_in_image(&shifted), None);
        // Cut short: its string section is not all there.
        assert_eq!(Btf::find_in_image(&image[..at + real.len() - 1]), None);
        assert_eq!(Btf::find_in_image(&[]), None);
    }

    #[test]
    fn hostile_headers_and_records_are_refused() {
        let blob = sample();
        assert_eq!(Btf::parse(&blob[..10]).err(), Some(BtfError::Truncated));
        let mut bad = blob.clone();
        bad[0] = 0;
        assert_eq!(Btf::parse(&bad).err(), Some(BtfError::BadMagic));
        let mut bad = blob.clone();
        bad[2] = 2;
        assert_eq!(Btf::parse(&bad).err(), Some(BtfError::BadHeader));
        // A string section past the end.
        let mut bad = blob.clone();
        bad[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Btf::parse(&bad).err(), Some(BtfError::Truncated));
        // A struct whose vlen runs past the type section.
        let mut bad = blob.clone();
        let n = bad.len();
        let tl = u32::from_le_bytes(bad[12..16].try_into().unwrap()) as usize;
        // vlen of the last record ("thing") is at 24 + tl - 5*12 - 12 + 4.
        let info_at = 24 + tl - 5 * 12 - 12 + 4;
        bad[info_at] = 0xff;
        let btf = Btf::parse(&bad[..n]).unwrap();
        assert_eq!(btf.find_aggregate("thing").err(), Some(BtfError::BadType));
        // An unknown kind.
        let mut bad = blob.clone();
        bad[24 + 7] = 0x1f;
        let btf = Btf::parse(&bad).unwrap();
        assert!(btf.types().any(|t| t.is_err()));
        // Every truncation of the blob and every single-byte corruption of
        // the type section is refused or parsed without panicking.
        for cut in 0..blob.len() {
            if let Ok(btf) = Btf::parse(&blob[..cut]) {
                let _ = btf.find_aggregate("thing").map(|t| btf.member(&t, "len"));
            }
        }
        for i in 24..blob.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut bad = blob.clone();
                bad[i] = v;
                if let Ok(btf) = Btf::parse(&bad) {
                    if let Ok(t) = btf.find_aggregate("thing") {
                        let _ = btf.member(&t, "len").map(|m| btf.size_of(m.type_id));
                        let _ = btf.member(&t, "comm").map(|m| btf.size_of(m.type_id));
                    }
                }
            }
        }
    }

    #[test]
    fn typedef_cycles_and_deep_nesting_end_with_an_error() {
        let mut b = Builder::new();
        // Type 1 is a typedef of itself.
        b.typedef("loop", 1);
        let u = b.int("int", 4);
        let mut inner = b.agg(false, "", 4, &[("x", u, 0, 0)]);
        for _ in 0..(MAX_NESTING + 2) {
            inner = b.agg(false, "", 4, &[("", inner, 0, 0)]);
        }
        b.agg(false, "deep", 4, &[("", inner, 0, 0), ("l", 1, 0, 0)]);
        let blob = b.build();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.strip(1).err(), Some(BtfError::TooDeep));
        let t = btf.find_aggregate("deep").unwrap();
        assert_eq!(btf.member(&t, "x").err(), Some(BtfError::TooDeep));
    }
}
