// SPDX-License-Identifier: GPL-2.0

//! Signature sets: the binary layout `KVM_PFI_SIGS_LOAD` takes
//! (`include/uapi/linux/kvm_pfi.h`, "Signature sets"), its validation, and
//! the matcher that scans guest pages with it.
//!
//! A set comes from user space and the pages come from the guest: both are
//! hostile. [`validate`] checks every field of a set and refuses it whole at
//! the first error; [`build`] compiles an accepted set into an automaton in
//! memory the caller allocates ([`SetInfo::storage_words`] words);
//! [`Matcher::scan`] then runs over any bytes without allocating, recursing
//! or backtracking.
//!
//! # Matching
//!
//! Each pattern has one *atom*: the most selective run of one to four
//! consecutive fully fixed bytes (mask 0xFF) in one of its segments, which
//! [`validate`] requires to exist. Where an atom can start is found with
//! bitmaps over the atoms' first byte pairs and triples, looked up at each
//! position independently of the others (so the CPU overlaps the lookups);
//! where they let a position through, a trie of the atoms (stored as dense
//! rows over byte classes: bytes that occur in no atom share one class) runs
//! from that position for at most four bytes. Each occurrence of an atom is
//! a *candidate*, verified in the haystack around it: the
//! atom's segment at its fixed offset, the segments after it forwards and
//! the ones before it backwards. Jumps make the set of possible offsets of
//! the next segment a range; the verification tracks these sets as bitsets
//! over the [`MAX_SPAN`] bytes a match can span (twice that around a
//! candidate), so it never backtracks.
//!
//! A rule is reported once per start, with the shortest length over its
//! patterns and their jump choices. The scan keeps no state between
//! candidates to achieve this: of all the candidates through which a rule
//! matches at a start, only the one whose atom ends first (then the lowest
//! pattern index) reports it. A rule with one pattern whose atom is at a
//! fixed distance from the start (no variable jump before its segment, the
//! common case) needs nothing more: each start has one candidate. Otherwise
//! a candidate with a few possible starts evaluates every pattern of the
//! rule at each of them; one with many computes, per pattern of the rule,
//! the starts that earlier candidates cover, in one backward pass over its
//! neighbourhood.
//!
//! # Cost
//!
//! The scan does not allocate or recurse; its deepest path keeps three
//! bitsets of 128 or 256 bytes on the stack (about 1.1 KiB in all on
//! x86-64). Per byte it costs one bitmap lookup, and where the atoms' first
//! two bytes occur a second one and at most four trie steps; per candidate,
//! bitset passes over at most [`MAX_CHAIN`] segments tested at up to twice
//! [`MAX_SPAN`] offsets, for each pattern of the rule when it has several,
//! whatever the haystack holds. Candidates are as frequent as their atoms in
//! the haystack; what makes them expensive is patterns whose segments match
//! nearly anything (wildcards, nibbles) across long jumps: a page of "A"
//! against `4? [0-256] 4? [0-256] 41 41` takes tens of milliseconds. The
//! figures, beside yara-x on the same rules and pages, are in
//! `Documentation/performance.rst`.
//!
//! # Haystacks
//!
//! A scan finds the matches that lie entirely inside its haystack. A match
//! is at most [`MAX_SPAN`] bytes long, so to find each match that starts in
//! a page exactly once, scan the page followed by the first
//! `MAX_SPAN - 1` bytes of the next one and keep the matches whose start is
//! inside the page (every match that touches a page lies within
//! `MAX_SPAN - 1` bytes of it on either side).

use super::le::{le16, le32};
use core::fmt;

/// `KVM_PFI_SIGS_MAGIC`: "KPFS" as a little-endian `u32`.
pub const MAGIC: u32 = 0x5346_504b;
/// `KVM_PFI_SIGS_VERSION`: the layout this module implements.
pub const VERSION: u32 = 1;
/// Bytes of `struct kvm_pfi_sigs_header`.
pub const HEADER_SIZE: usize = 32;
/// Bytes of `struct kvm_pfi_sig_rule`.
pub const RULE_SIZE: usize = 8;
/// Bytes of `struct kvm_pfi_sig_pattern`.
pub const PATTERN_SIZE: usize = 4;
/// Bytes of `struct kvm_pfi_sig_segment`.
pub const SEGMENT_SIZE: usize = 12;
/// `KVM_PFI_SIGS_MAX_SIZE`: bytes of a whole set.
pub const MAX_SIZE: usize = 1 << 20;
/// `KVM_PFI_SIGS_MAX_RULES`.
pub const MAX_RULES: usize = 1024;
/// `KVM_PFI_SIGS_MAX_PATTERNS`: patterns over all rules.
pub const MAX_PATTERNS: usize = 1024;
/// `KVM_PFI_SIGS_MAX_SEGMENTS`: segments in the segment table.
pub const MAX_SEGMENTS: usize = 8192;
/// `KVM_PFI_SIG_MAX_PATTERNS`: patterns of one rule.
pub const MAX_RULE_PATTERNS: usize = 16;
/// `KVM_PFI_SIG_MAX_SEGMENTS`: segments in one pattern's chain.
pub const MAX_CHAIN: usize = 32;
/// `KVM_PFI_SIG_MAX_JUMP`: the largest `jump_max` of a segment.
pub const MAX_JUMP: usize = 256;
/// `KVM_PFI_SIG_MAX_SPAN`: the longest match of a pattern (its segments'
/// lengths plus their `jump_max`).
pub const MAX_SPAN: usize = 1024;
/// `KVM_PFI_SIG_NAME_MAX`: the longest rule name, in bytes.
pub const NAME_MAX: usize = 63;
/// `KVM_PFI_SIG_END`: the `next` of a pattern's last segment.
pub const END: u16 = 0xffff;

// Field offsets in the header and in the entries of each table.
const H_MAGIC: usize = 0;
const H_VERSION: usize = 4;
const H_SIZE: usize = 8;
const H_NR_RULES: usize = 12;
const H_NR_PATTERNS: usize = 16;
const H_NR_SEGMENTS: usize = 20;
const H_STRINGS_LEN: usize = 24;
const H_RESERVED: usize = 28;
const R_NAME_OFF: usize = 0;
const R_NAME_LEN: usize = 4;
const R_NR_PATTERNS: usize = 6;
const P_FIRST_SEGMENT: usize = 0;
const P_RESERVED: usize = 2;
const S_BYTES_OFF: usize = 0;
const S_LEN: usize = 4;
const S_NEXT: usize = 6;
const S_JUMP_MIN: usize = 8;
const S_JUMP_MAX: usize = 10;

/// What is wrong with a set; each kind is one errno of `KVM_PFI_SIGS_LOAD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigErrorKind {
    /// No bytes, or no rules (EINVAL).
    Empty,
    /// The set, a count or a pattern over its limit (E2BIG).
    TooLarge,
    /// A version this module does not know (EPROTO).
    Version,
    /// A segment chain that does not go forward (ELOOP).
    Loop,
    /// Anything else: bad magic, truncated, out of bounds, bad values
    /// (EBADMSG).
    Malformed,
}

/// Why a set was refused, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigError {
    /// What is wrong.
    pub kind: SigErrorKind,
    /// Byte offset in the set of the offending field (for a bad name
    /// character or a value byte outside its mask, of that byte).
    pub offset: usize,
}

impl SigError {
    const fn new(kind: SigErrorKind, offset: usize) -> Self {
        SigError { kind, offset }
    }
}

impl fmt::Display for SigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            SigErrorKind::Empty => "empty signature set",
            SigErrorKind::TooLarge => "signature set over a limit",
            SigErrorKind::Version => "unsupported signature set version",
            SigErrorKind::Loop => "segment chain going backwards",
            SigErrorKind::Malformed => "malformed signature set",
        };
        write!(f, "{} at byte {}", what, self.offset)
    }
}

/// What [`validate`] learnt about an accepted set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetInfo {
    /// Rules.
    pub nr_rules: u32,
    /// Patterns over all rules.
    pub nr_patterns: u32,
    /// Entries of the segment table.
    pub nr_segments: u32,
    /// Bytes of the set.
    pub size: u32,
    /// Length of the `u32` storage [`build`] needs, at most
    /// [`MAX_STORAGE_WORDS`].
    pub storage_words: usize,
}

/// One match reported by [`Matcher::scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// Index of the rule in the set.
    pub rule: u32,
    /// Index (in the set's pattern table) of the pattern that matched
    /// shortest at this start; the lowest such index on a tie.
    pub pattern: u32,
    /// Offset of the match in the haystack.
    pub start: usize,
    /// Bytes matched: the shortest match of the rule at `start`.
    pub len: usize,
}

/// A `u32` from the set or the storage as an index (saturating on targets
/// where `usize` is narrower, so that it is out of bounds there).
fn us(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// A rule entry.
#[derive(Clone, Copy)]
struct RuleEntry {
    name_off: usize,
    name_len: usize,
    nr_patterns: usize,
}

/// A segment entry.
#[derive(Clone, Copy)]
struct Seg {
    bytes_off: usize,
    len: usize,
    next: u16,
    jump_min: usize,
    jump_max: usize,
}

/// The tables of a set, placed as its header says. Only their placement
/// inside the blob is checked here: the entries are read with bounds
/// checks, and are meaningful once [`validate`] accepted the set.
#[derive(Clone, Copy)]
struct View<'a> {
    blob: &'a [u8],
    nr_rules: usize,
    nr_patterns: usize,
    nr_segments: usize,
    rules: usize,
    patterns: usize,
    segments: usize,
    strings: usize,
    strings_len: usize,
}

impl<'a> View<'a> {
    fn new(blob: &'a [u8]) -> Option<Self> {
        let nr_rules = us(le32(blob, H_NR_RULES)?);
        let nr_patterns = us(le32(blob, H_NR_PATTERNS)?);
        let nr_segments = us(le32(blob, H_NR_SEGMENTS)?);
        let strings_len = us(le32(blob, H_STRINGS_LEN)?);
        let rules = HEADER_SIZE;
        let patterns = rules.checked_add(nr_rules.checked_mul(RULE_SIZE)?)?;
        let segments = patterns.checked_add(nr_patterns.checked_mul(PATTERN_SIZE)?)?;
        let strings = segments.checked_add(nr_segments.checked_mul(SEGMENT_SIZE)?)?;
        if strings.checked_add(strings_len)? > blob.len() {
            return None;
        }
        Some(View {
            blob,
            nr_rules,
            nr_patterns,
            nr_segments,
            rules,
            patterns,
            segments,
            strings,
            strings_len,
        })
    }

    // Entry offsets: the tables fit in the blob, so for an index below the
    // table's count these cannot overflow.
    fn rule_off(&self, i: usize) -> usize {
        self.rules.wrapping_add(i.wrapping_mul(RULE_SIZE))
    }

    fn pattern_off(&self, i: usize) -> usize {
        self.patterns.wrapping_add(i.wrapping_mul(PATTERN_SIZE))
    }

    fn segment_off(&self, i: usize) -> usize {
        self.segments.wrapping_add(i.wrapping_mul(SEGMENT_SIZE))
    }

    fn rule(&self, i: usize) -> Option<RuleEntry> {
        if i >= self.nr_rules {
            return None;
        }
        let off = self.rule_off(i);
        Some(RuleEntry {
            name_off: us(le32(self.blob, off.checked_add(R_NAME_OFF)?)?),
            name_len: usize::from(le16(self.blob, off.checked_add(R_NAME_LEN)?)?),
            nr_patterns: usize::from(le16(self.blob, off.checked_add(R_NR_PATTERNS)?)?),
        })
    }

    fn first_segment(&self, p: usize) -> Option<u16> {
        if p >= self.nr_patterns {
            return None;
        }
        le16(self.blob, self.pattern_off(p).checked_add(P_FIRST_SEGMENT)?)
    }

    fn segment(&self, i: usize) -> Option<Seg> {
        if i >= self.nr_segments {
            return None;
        }
        let off = self.segment_off(i);
        let f16 = |field: usize| le16(self.blob, off.checked_add(field)?);
        Some(Seg {
            bytes_off: us(le32(self.blob, off.checked_add(S_BYTES_OFF)?)?),
            len: usize::from(f16(S_LEN)?),
            next: f16(S_NEXT)?,
            jump_min: usize::from(f16(S_JUMP_MIN)?),
            jump_max: usize::from(f16(S_JUMP_MAX)?),
        })
    }

    /// `len` bytes at `off` in the strings.
    fn string(&self, off: usize, len: usize) -> Option<&'a [u8]> {
        let end = off.checked_add(len)?;
        if end > self.strings_len {
            return None;
        }
        self.blob
            .get(self.strings.checked_add(off)?..self.strings.checked_add(end)?)
    }

    /// A segment's (value, mask) pairs.
    fn seg_bytes(&self, seg: &Seg) -> Option<&'a [u8]> {
        self.string(seg.bytes_off, seg.len.checked_mul(2)?)
    }

    /// Pattern `p`'s chain of segments into `out`; its length, or `None` if
    /// it is not a valid chain (which [`validate`] rules out).
    fn chain(&self, p: usize, out: &mut [u16; MAX_CHAIN]) -> Option<usize> {
        let mut s = self.first_segment(p)?;
        for (n, slot) in out.iter_mut().enumerate() {
            *slot = s;
            let seg = self.segment(usize::from(s))?;
            if seg.next == END {
                return Some(n.wrapping_add(1));
            }
            if seg.next <= s {
                return None;
            }
            s = seg.next;
        }
        None
    }
}

/// The byte offset of the first character of `name` that a rule name may
/// not have there: `[A-Za-z_][A-Za-z0-9_]*`.
fn bad_name_char(name: &[u8]) -> Option<usize> {
    if name.first().is_some_and(u8::is_ascii_digit) {
        return Some(0);
    }
    name.iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
}

/// Longest atom: a trie of 4-byte atoms has at most 1 + 4 states per
/// pattern.
const MAX_ATOM: usize = 4;

/// The atom of a pattern.
#[derive(Clone, Copy)]
struct Atom {
    /// Index of its segment in the segment table.
    seg: u16,
    /// Offset of its first byte in that segment.
    off: usize,
    /// 1..=MAX_ATOM.
    len: usize,
    bytes: [u8; MAX_ATOM],
}

/// How much an atom byte narrows the candidates: zero and all-ones fill
/// memory, ASCII text and a few x86-64 opcode bytes are common.
fn byte_weight(b: u8) -> u32 {
    match b {
        0x00 | 0xff => 1,
        b' '
        | b'a'..=b'z'
        | b'0'..=b'9'
        | 0x01
        | 0x0f
        | 0x48
        | 0x89
        | 0x8b
        | 0x90
        | 0xcc
        | 0xe8 => 3,
        _ => 4,
    }
}

/// Pattern `p`'s atom: of all windows of up to [`MAX_ATOM`] consecutive
/// fully fixed bytes, the one with the highest total weight (the first on a
/// tie, so earlier segments, more often at a fixed distance from the
/// start, win).
fn pick_atom(view: &View<'_>, p: usize) -> Option<Atom> {
    let mut best: Option<(u32, Atom)> = None;
    let mut s = view.first_segment(p)?;
    for _ in 0..MAX_CHAIN {
        let seg = view.segment(usize::from(s))?;
        let pairs = view.seg_bytes(&seg)?;
        // Length of the run of fixed bytes ending at `i`.
        let mut run = 0usize;
        for (i, pair) in pairs.chunks_exact(2).enumerate() {
            if pair.get(1) != Some(&0xff) {
                run = 0;
                continue;
            }
            run = run.saturating_add(1);
            let len = run.min(MAX_ATOM);
            let start = i.saturating_add(1).saturating_sub(len);
            let window =
                pairs.get(start.saturating_mul(2)..i.saturating_add(1).saturating_mul(2))?;
            let mut atom = Atom {
                seg: s,
                off: start,
                len,
                bytes: [0; MAX_ATOM],
            };
            let mut score = 0u32;
            for (dst, pair) in atom.bytes.iter_mut().zip(window.chunks_exact(2)) {
                let v = pair.first().copied().unwrap_or(0);
                *dst = v;
                score = score.saturating_add(byte_weight(v));
            }
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, atom));
            }
        }
        if seg.next == END || seg.next <= s {
            break;
        }
        s = seg.next;
    }
    best.map(|(_, atom)| atom)
}

/// The automaton's dimensions, from the atoms.
#[derive(Clone, Copy)]
struct Dims {
    /// An upper bound of the trie's states: the root plus one per atom byte
    /// (atoms with a common prefix share states; the rest stay unused).
    states: usize,
    /// Byte classes: one per distinct atom byte, plus one for all other
    /// bytes if there are any.
    classes: usize,
    /// The distinct atom bytes, as a bitmap.
    bytes: [u64; 4],
    /// The patterns' chain lengths, summed.
    chain_words: usize,
}

/// The most states a trie can have.
const MAX_STATES: usize = 1 + MAX_ATOM * MAX_PATTERNS;

// Storage: a header, then one region after another:
//
//   classes   256 words: the class of each byte
//   starts    three bitmaps of 2^16 bits (2048 words each), where an atom
//             can start (see `Matcher::scan_with`): over byte pairs, bit
//             b0 | b1 << 8 set when an atom starts with b0 b1 (a one-byte
//             atom b0: every b1); the same for atoms of one or two bytes
//             only; over a hash of byte triples (`triple_hash`), set for
//             the first three bytes of every longer atom
//   rules     per rule: first pattern | nr_patterns << 16
//   patterns  per pattern: rule | position of the atom's segment in the
//             chain << 16, atom offset in that segment | atom length << 16,
//             chain start | chain length << 16 (the atom's end state
//             while building)
//   states    per state: depth << 16, outputs start | count << 16, and a
//             word used only while building (the outputs' cursor)
//   outputs   the patterns whose atom ends in each state, state by state
//   chains    each pattern's segments, in order, one per word
//   trans     states * classes 16-bit transitions, two per word: the
//             trie's child state, 0 for none
const STORE_TAG: u32 = 0x5346_4b41; // "AKFS"
const STORE_HDR: usize = 6;
const CLASS_WORDS: usize = 256;
/// Words of one bitmap of `starts`.
const PAIR_WORDS: usize = 65536 / 32;
const STARTS_WORDS: usize = 3 * PAIR_WORDS;
const PATTERN_WORDS: usize = 3;
const STATE_WORDS: usize = 3;
const STATE_MASK: u16 = 0x7fff;

/// Words of storage for these dimensions.
const fn storage_words_for(
    rules: usize,
    patterns: usize,
    states: usize,
    classes: usize,
    chain_words: usize,
) -> usize {
    STORE_HDR
        .saturating_add(CLASS_WORDS)
        .saturating_add(STARTS_WORDS)
        .saturating_add(rules)
        .saturating_add(patterns.saturating_mul(PATTERN_WORDS))
        .saturating_add(states.saturating_mul(STATE_WORDS))
        .saturating_add(patterns)
        .saturating_add(chain_words)
        .saturating_add(states.saturating_mul(classes).div_ceil(2))
}

/// The most storage a set can need: 581,001 words (2.22 MiB), nearly all
/// of it the transition table of 4097 states over 256 classes (1024
/// patterns with four-byte atoms that share no prefix, over all 256 byte
/// values), then 32 Ki words of chains (1024 patterns of 32 segments).
/// 500 text strings of 8 to 16 bytes need 164 KiB.
pub const MAX_STORAGE_WORDS: usize = storage_words_for(
    MAX_RULES,
    MAX_PATTERNS,
    MAX_STATES,
    256,
    MAX_PATTERNS * MAX_CHAIN,
);

/// Where each storage region starts.
#[derive(Clone, Copy)]
struct Regions {
    classes: usize,
    starts: usize,
    rules: usize,
    patterns: usize,
    states: usize,
    outputs: usize,
    chains: usize,
    trans: usize,
    total: usize,
}

impl Regions {
    fn new(
        rules: usize,
        patterns: usize,
        states: usize,
        classes: usize,
        chain_words: usize,
    ) -> Option<Self> {
        if rules > MAX_RULES
            || patterns > MAX_PATTERNS
            || !(1..=MAX_STATES).contains(&states)
            || !(1..=256).contains(&classes)
            || chain_words > MAX_PATTERNS * MAX_CHAIN
        {
            return None;
        }
        // Bounded by the checks above: no overflow.
        let r_classes = STORE_HDR;
        let r_starts = r_classes.saturating_add(CLASS_WORDS);
        let r_rules = r_starts.saturating_add(STARTS_WORDS);
        let r_patterns = r_rules.saturating_add(rules);
        let r_states = r_patterns.saturating_add(patterns.saturating_mul(PATTERN_WORDS));
        let r_outputs = r_states.saturating_add(states.saturating_mul(STATE_WORDS));
        let r_chains = r_outputs.saturating_add(patterns);
        let r_trans = r_chains.saturating_add(chain_words);
        Some(Regions {
            classes: r_classes,
            starts: r_starts,
            rules: r_rules,
            patterns: r_patterns,
            states: r_states,
            outputs: r_outputs,
            chains: r_chains,
            trans: r_trans,
            total: storage_words_for(rules, patterns, states, classes, chain_words),
        })
    }
}

/// A set [`validate`] accepted, with what [`build`] needs.
struct Checked<'a> {
    view: View<'a>,
    info: SetInfo,
    dims: Dims,
}

/// Check every field of a set, in the order of the blob, then each
/// pattern's chain.
pub fn validate(blob: &[u8]) -> Result<SetInfo, SigError> {
    check(blob).map(|c| c.info)
}

fn check(blob: &[u8]) -> Result<Checked<'_>, SigError> {
    use SigErrorKind::{Empty, Malformed, TooLarge, Version};
    if blob.is_empty() {
        return Err(SigError::new(Empty, 0));
    }
    if blob.len() > MAX_SIZE {
        return Err(SigError::new(TooLarge, H_SIZE));
    }
    let field = |off: usize| le32(blob, off).ok_or(SigError::new(Malformed, off));
    if field(H_MAGIC)? != MAGIC {
        return Err(SigError::new(Malformed, H_MAGIC));
    }
    if field(H_VERSION)? != VERSION {
        return Err(SigError::new(Version, H_VERSION));
    }
    if us(field(H_SIZE)?) != blob.len() {
        return Err(SigError::new(Malformed, H_SIZE));
    }
    let nr_rules = us(field(H_NR_RULES)?);
    if nr_rules == 0 {
        return Err(SigError::new(Empty, H_NR_RULES));
    }
    let limits = [
        (H_NR_RULES, nr_rules, MAX_RULES),
        (H_NR_PATTERNS, us(field(H_NR_PATTERNS)?), MAX_PATTERNS),
        (H_NR_SEGMENTS, us(field(H_NR_SEGMENTS)?), MAX_SEGMENTS),
    ];
    for (off, count, max) in limits {
        if count > max {
            return Err(SigError::new(TooLarge, off));
        }
    }
    // The counts are within their limits: View::new cannot overflow, and
    // fails only if the tables and strings do not fit.
    let view = View::new(blob).ok_or(SigError::new(Malformed, H_STRINGS_LEN))?;
    if view.strings.saturating_add(view.strings_len) != blob.len() {
        return Err(SigError::new(Malformed, H_STRINGS_LEN));
    }
    if field(H_RESERVED)? != 0 {
        return Err(SigError::new(Malformed, H_RESERVED));
    }
    check_rules(&view)?;
    check_patterns(&view)?;
    check_segments(&view)?;
    let dims = check_chains(&view)?;
    let storage_words = storage_words_for(
        view.nr_rules,
        view.nr_patterns,
        dims.states,
        dims.classes,
        dims.chain_words,
    );
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(Checked {
        view,
        info: SetInfo {
            nr_rules: count(view.nr_rules),
            nr_patterns: count(view.nr_patterns),
            nr_segments: count(view.nr_segments),
            size: count(blob.len()),
            storage_words,
        },
        dims,
    })
}

fn check_rules(view: &View<'_>) -> Result<(), SigError> {
    use SigErrorKind::{Malformed, TooLarge};
    let mut tiled = 0usize;
    for r in 0..view.nr_rules {
        let off = view.rule_off(r);
        let at = |field: usize| off.saturating_add(field);
        let e = view.rule(r).ok_or(SigError::new(Malformed, off))?;
        if e.name_off > view.strings_len {
            return Err(SigError::new(Malformed, at(R_NAME_OFF)));
        }
        if !(1..=NAME_MAX).contains(&e.name_len) {
            return Err(SigError::new(Malformed, at(R_NAME_LEN)));
        }
        let name = view
            .string(e.name_off, e.name_len)
            .ok_or(SigError::new(Malformed, at(R_NAME_OFF)))?;
        if let Some(i) = bad_name_char(name) {
            let byte = view.strings.saturating_add(e.name_off).saturating_add(i);
            return Err(SigError::new(Malformed, byte));
        }
        if e.nr_patterns == 0 {
            return Err(SigError::new(Malformed, at(R_NR_PATTERNS)));
        }
        if e.nr_patterns > MAX_RULE_PATTERNS {
            return Err(SigError::new(TooLarge, at(R_NR_PATTERNS)));
        }
        tiled = tiled.saturating_add(e.nr_patterns);
        if tiled > view.nr_patterns {
            return Err(SigError::new(Malformed, at(R_NR_PATTERNS)));
        }
    }
    if tiled != view.nr_patterns {
        return Err(SigError::new(Malformed, H_NR_PATTERNS));
    }
    Ok(())
}

fn check_patterns(view: &View<'_>) -> Result<(), SigError> {
    let malformed = |off: usize| SigError::new(SigErrorKind::Malformed, off);
    for p in 0..view.nr_patterns {
        let off = view.pattern_off(p);
        let first = le16(view.blob, off).ok_or(malformed(off))?;
        if usize::from(first) >= view.nr_segments {
            return Err(malformed(off));
        }
        let reserved_off = off.saturating_add(P_RESERVED);
        if le16(view.blob, reserved_off) != Some(0) {
            return Err(malformed(reserved_off));
        }
    }
    Ok(())
}

fn check_segments(view: &View<'_>) -> Result<(), SigError> {
    use SigErrorKind::{Loop, Malformed};
    for s in 0..view.nr_segments {
        let off = view.segment_off(s);
        let at = |field: usize| off.saturating_add(field);
        let seg = view.segment(s).ok_or(SigError::new(Malformed, off))?;
        if seg.bytes_off > view.strings_len {
            return Err(SigError::new(Malformed, at(S_BYTES_OFF)));
        }
        if seg.len == 0 {
            return Err(SigError::new(Malformed, at(S_LEN)));
        }
        let pairs = view
            .seg_bytes(&seg)
            .ok_or(SigError::new(Malformed, at(S_BYTES_OFF)))?;
        let bad = pairs
            .chunks_exact(2)
            .position(|pair| matches!(*pair, [value, mask] if value & !mask != 0));
        if let Some(i) = bad {
            let byte = view
                .strings
                .saturating_add(seg.bytes_off)
                .saturating_add(i.saturating_mul(2));
            return Err(SigError::new(Malformed, byte));
        }
        if seg.next == END {
            if seg.jump_min != 0 {
                return Err(SigError::new(Malformed, at(S_JUMP_MIN)));
            }
            if seg.jump_max != 0 {
                return Err(SigError::new(Malformed, at(S_JUMP_MAX)));
            }
            continue;
        }
        let next = usize::from(seg.next);
        if next <= s {
            return Err(SigError::new(Loop, at(S_NEXT)));
        }
        if next >= view.nr_segments {
            return Err(SigError::new(Malformed, at(S_NEXT)));
        }
        if seg.jump_min > seg.jump_max {
            return Err(SigError::new(Malformed, at(S_JUMP_MIN)));
        }
        if seg.jump_max > MAX_JUMP {
            return Err(SigError::new(Malformed, at(S_JUMP_MAX)));
        }
    }
    Ok(())
}

/// Each pattern's chain: length, span and anchor; then its atom.
fn check_chains(view: &View<'_>) -> Result<Dims, SigError> {
    use SigErrorKind::{Malformed, TooLarge};
    let mut dims = Dims {
        states: 1,
        classes: 0,
        bytes: [0; 4],
        chain_words: 0,
    };
    for p in 0..view.nr_patterns {
        let off = view.pattern_off(p);
        let mut s = view.first_segment(p).ok_or(SigError::new(Malformed, off))?;
        // The field that led to `s`: blamed if the chain is too long.
        let mut via = off.saturating_add(P_FIRST_SEGMENT);
        let mut n = 0usize;
        let mut span = 0usize;
        let mut anchored = false;
        loop {
            n = n.saturating_add(1);
            if n > MAX_CHAIN {
                return Err(SigError::new(TooLarge, via));
            }
            let soff = view.segment_off(usize::from(s));
            let seg = view
                .segment(usize::from(s))
                .ok_or(SigError::new(Malformed, via))?;
            span = span.saturating_add(seg.len);
            if span > MAX_SPAN {
                return Err(SigError::new(TooLarge, soff.saturating_add(S_LEN)));
            }
            span = span.saturating_add(seg.jump_max);
            if span > MAX_SPAN {
                return Err(SigError::new(TooLarge, soff.saturating_add(S_JUMP_MAX)));
            }
            let pairs = view.seg_bytes(&seg).unwrap_or(&[]);
            anchored |= pairs.chunks_exact(2).any(|pair| pair.get(1) == Some(&0xff));
            if seg.next == END {
                break;
            }
            via = soff.saturating_add(S_NEXT);
            s = seg.next;
        }
        if !anchored {
            return Err(SigError::new(Malformed, off));
        }
        dims.chain_words = dims.chain_words.saturating_add(n);
        let atom = pick_atom(view, p).ok_or(SigError::new(Malformed, off))?;
        dims.states = dims.states.saturating_add(atom.len);
        for &b in atom.bytes.iter().take(atom.len) {
            if let Some(w) = dims.bytes.get_mut(usize::from(b >> 6)) {
                *w |= 1 << (b & 63);
            }
        }
    }
    let distinct = dims.bytes.iter().map(|w| us(w.count_ones())).sum::<usize>();
    dims.classes = if distinct < 256 {
        distinct.saturating_add(1)
    } else {
        distinct
    };
    Ok(dims)
}

// Word access that never panics: storage regions are laid out by
// `Regions`, and out-of-range accesses (only possible with storage that
// `build` did not fill) read 0 and write nothing.
fn word(words: &[u32], i: usize) -> u32 {
    words.get(i).copied().unwrap_or(0)
}

fn put(words: &mut [u32], i: usize, v: u32) {
    if let Some(w) = words.get_mut(i) {
        *w = v;
    }
}

fn lo16(w: u32) -> usize {
    usize::from(w as u16)
}

fn hi16(w: u32) -> usize {
    usize::from((w >> 16) as u16)
}

fn pack(lo: usize, hi: usize) -> u32 {
    // Every packed value is below 2^16 (states, patterns, rules, segment
    // offsets and counts are bounded by the limits).
    (lo as u32 & 0xffff) | ((hi as u32 & 0xffff) << 16)
}

fn get16(words: &[u32], i: usize) -> u16 {
    let w = word(words, i >> 1);
    if i & 1 == 0 {
        w as u16
    } else {
        (w >> 16) as u16
    }
}

fn set16(words: &mut [u32], i: usize, v: u16) {
    if let Some(w) = words.get_mut(i >> 1) {
        *w = if i & 1 == 0 {
            (*w & 0xffff_0000) | u32::from(v)
        } else {
            (*w & 0xffff) | (u32::from(v) << 16)
        };
    }
}

/// The 16-bit hash of the byte triple `b0 b1 b2` in the third bitmap of
/// `starts` (multiplicative: the top bits of a 32-bit product).
#[inline(always)]
fn triple_hash(b0: u8, b1: u8, b2: u8) -> usize {
    let t = u32::from(b0) | u32::from(b1) << 8 | u32::from(b2) << 16;
    (t.wrapping_mul(0x9e37_79b1) >> 16) as usize
}

/// Marks where `atom` can start in the bitmaps of `starts`.
fn mark_start(starts: &mut [u32], atom: &[u8]) {
    let mut set = |map: usize, bit: usize| {
        let i = map.saturating_mul(PAIR_WORDS).saturating_add(bit >> 5);
        if let Some(w) = starts.get_mut(i) {
            *w |= 1 << (bit & 31);
        }
    };
    match *atom {
        [b0, b1, b2, ..] => {
            set(0, usize::from(b0) | usize::from(b1) << 8);
            set(2, triple_hash(b0, b1, b2));
        }
        [b0, b1] => {
            set(0, usize::from(b0) | usize::from(b1) << 8);
            set(1, usize::from(b0) | usize::from(b1) << 8);
        }
        // A one-byte atom starts wherever its byte is, whatever follows.
        [b0] => (0..256).for_each(|b1| {
            set(0, usize::from(b0) | b1 << 8);
            set(1, usize::from(b0) | b1 << 8);
        }),
        [] => {}
    }
}

/// Compile an accepted set's automaton into `storage`, whose length must
/// be [`SetInfo::storage_words`] (else [`SigErrorKind::Malformed`] at
/// offset 0). Validates the set first: on error, `storage` is untouched.
pub fn build(blob: &[u8], storage: &mut [u32]) -> Result<(), SigError> {
    let checked = check(blob)?;
    let malformed = SigError::new(SigErrorKind::Malformed, 0);
    if storage.len() != checked.info.storage_words {
        return Err(malformed);
    }
    let view = checked.view;
    let dims = checked.dims;
    let nr_classes = dims.classes;
    let reg = Regions::new(
        view.nr_rules,
        view.nr_patterns,
        dims.states,
        nr_classes,
        dims.chain_words,
    )
    .ok_or(malformed)?;
    storage.fill(0);
    let (hdr, rest) = storage.split_at_mut_checked(reg.classes).ok_or(malformed)?;
    let (classes, rest) = rest.split_at_mut_checked(CLASS_WORDS).ok_or(malformed)?;
    let (starts, rest) = rest.split_at_mut_checked(STARTS_WORDS).ok_or(malformed)?;
    let (rules, rest) = rest
        .split_at_mut_checked(reg.patterns.saturating_sub(reg.rules))
        .ok_or(malformed)?;
    let (pats, rest) = rest
        .split_at_mut_checked(reg.states.saturating_sub(reg.patterns))
        .ok_or(malformed)?;
    let (states, rest) = rest
        .split_at_mut_checked(reg.outputs.saturating_sub(reg.states))
        .ok_or(malformed)?;
    let (outputs, rest) = rest
        .split_at_mut_checked(reg.chains.saturating_sub(reg.outputs))
        .ok_or(malformed)?;
    let (chains, trans) = rest
        .split_at_mut_checked(reg.trans.saturating_sub(reg.chains))
        .ok_or(malformed)?;

    let dims_words = [
        STORE_TAG,
        checked.info.nr_rules,
        checked.info.nr_patterns,
        dims.states as u32,
        nr_classes as u32,
        dims.chain_words as u32,
    ];
    for (dst, src) in hdr.iter_mut().zip(dims_words) {
        *dst = src;
    }

    // Atom bytes get classes 1.. (0.. if all 256 occur); the rest share 0.
    let distinct: u32 = dims.bytes.iter().map(|w| w.count_ones()).sum();
    let mut next_class = u32::from(distinct < 256);
    for (b, class) in classes.iter_mut().enumerate() {
        let present = dims
            .bytes
            .get(b >> 6)
            .is_some_and(|w| w & (1 << (b & 63)) != 0);
        if present {
            *class = next_class;
            next_class = next_class.saturating_add(1);
        }
    }
    let class_of = |b: u8| us(word(classes, usize::from(b)));

    // Rules, patterns, and the trie of the atoms (state 0 is the root; a
    // transition 0 is "no child" until the rows are completed below).
    let mut nr_states = 1usize;
    let mut p = 0usize;
    let mut chain_start = 0usize;
    for r in 0..view.nr_rules {
        let e = view.rule(r).ok_or(malformed)?;
        put(rules, r, pack(p, e.nr_patterns));
        for _ in 0..e.nr_patterns {
            let atom = pick_atom(&view, p).ok_or(malformed)?;
            mark_start(starts, atom.bytes.get(..atom.len).ok_or(malformed)?);
            let mut s = 0usize;
            for &b in atom.bytes.iter().take(atom.len) {
                let i = s.saturating_mul(nr_classes).saturating_add(class_of(b));
                let mut t = usize::from(get16(trans, i));
                if t == 0 {
                    if nr_states >= dims.states {
                        return Err(malformed);
                    }
                    t = nr_states;
                    nr_states = nr_states.saturating_add(1);
                    set16(trans, i, t as u16);
                    let depth = hi16(word(states, s.saturating_mul(STATE_WORDS)));
                    put(
                        states,
                        t.saturating_mul(STATE_WORDS),
                        pack(0, depth.saturating_add(1)),
                    );
                }
                s = t;
            }
            // The chain, and where the atom's segment is in it.
            let mut chain = [0u16; MAX_CHAIN];
            let n = view.chain(p, &mut chain).ok_or(malformed)?;
            let chain = chain.get(..n).ok_or(malformed)?;
            let t = chain.iter().position(|&s| s == atom.seg).ok_or(malformed)?;
            for (k, &s) in chain.iter().enumerate() {
                put(chains, chain_start.saturating_add(k), u32::from(s));
            }
            let pw = p.saturating_mul(PATTERN_WORDS);
            put(pats, pw, pack(r, t));
            put(pats, pw.saturating_add(1), pack(atom.off, atom.len));
            put(pats, pw.saturating_add(2), s as u32);
            chain_start = chain_start.saturating_add(n);
            let out = s.saturating_mul(STATE_WORDS).saturating_add(1);
            put(states, out, word(states, out).saturating_add(1 << 16));
            p = p.saturating_add(1);
        }
    }

    // Outputs, sorted by state: counts to starts, then place each pattern
    // (the dictionary-link word serves as the cursor meanwhile).
    let mut start = 0usize;
    for s in 0..nr_states {
        let sw = s.saturating_mul(STATE_WORDS);
        let count = hi16(word(states, sw.saturating_add(1)));
        put(states, sw.saturating_add(1), pack(start, count));
        put(states, sw.saturating_add(2), start as u32);
        start = start.saturating_add(count);
    }
    // Then each pattern's word 2 becomes its chain's place.
    let mut chain_start = 0usize;
    for p in 0..view.nr_patterns {
        let w2 = p.saturating_mul(PATTERN_WORDS).saturating_add(2);
        let cursor = us(word(pats, w2))
            .saturating_mul(STATE_WORDS)
            .saturating_add(2);
        let at = word(states, cursor);
        put(outputs, us(at), p as u32);
        put(states, cursor, at.saturating_add(1));
        let n = view.chain(p, &mut [0; MAX_CHAIN]).ok_or(malformed)?;
        put(pats, w2, pack(chain_start, n));
        chain_start = chain_start.saturating_add(n);
    }
    for s in 0..nr_states {
        put(states, s.saturating_mul(STATE_WORDS).saturating_add(2), 0);
    }

    Ok(())
}

/// Words of a bitset of the offsets in one match ([`MAX_SPAN`] bits), and
/// of one of the positions around a candidate's atom (twice that: the
/// matches through it start at most [`MAX_SPAN`] bytes before it).
const NARROW: usize = MAX_SPAN / 64;
const WIDE: usize = 2 * NARROW;

/// A set of offsets `0..64 * N`; offsets shifted out of it are dropped.
#[derive(Clone, Copy)]
struct Bits<const N: usize>([u64; N]);

type Narrow = Bits<NARROW>;
type Wide = Bits<WIDE>;

impl<const N: usize> Bits<N> {
    const EMPTY: Self = Bits([0; N]);

    /// Become the one offset 0 (in place: a returned set could be a
    /// second copy on the stack).
    fn set_zero(&mut self) {
        for (i, w) in self.0.iter_mut().enumerate() {
            *w = u64::from(i == 0);
        }
    }

    /// Become the offsets `lo..hi`.
    fn fill(&mut self, lo: usize, hi: usize) {
        for (i, w) in self.0.iter_mut().enumerate() {
            let first = i.saturating_mul(64);
            // Bits of this word below `n`.
            let below = |n: usize| match n.saturating_sub(first) {
                0 => 0,
                k if k >= 64 => u64::MAX,
                k => (1u64 << k).wrapping_sub(1),
            };
            *w = below(hi) & !below(lo);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    fn count(&self) -> usize {
        self.0.iter().map(|w| us(w.count_ones())).sum()
    }

    fn min(&self) -> Option<usize> {
        let (i, w) = self.0.iter().enumerate().find(|(_, &w)| w != 0)?;
        Some(i.saturating_mul(64).saturating_add(us(w.trailing_zeros())))
    }

    fn pop_min(&mut self) -> Option<usize> {
        let (i, w) = self.0.iter_mut().enumerate().find(|(_, w)| **w != 0)?;
        let bit = us(w.trailing_zeros());
        *w &= w.wrapping_sub(1);
        Some(i.saturating_mul(64).saturating_add(bit))
    }

    fn and(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a &= b;
        }
    }

    fn max(&self) -> Option<usize> {
        let (i, w) = self.0.iter().enumerate().rev().find(|(_, &w)| w != 0)?;
        let bit = 63usize.saturating_sub(us(w.leading_zeros()));
        Some(i.saturating_mul(64).saturating_add(bit))
    }

    fn contains(&self, bit: usize) -> bool {
        self.0
            .get(bit / 64)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }

    /// Keep the offsets for which `f` is true.
    fn retain(&mut self, f: impl Fn(usize) -> bool) {
        for (i, w) in self.0.iter_mut().enumerate() {
            let mut rest = *w;
            while rest != 0 {
                let bit = rest.trailing_zeros();
                rest &= rest.wrapping_sub(1);
                if !f(i.wrapping_mul(64).wrapping_add(us(bit))) {
                    *w &= !(1u64 << bit);
                }
            }
        }
    }

    /// Drop the offsets from `n` on.
    fn keep_below(&mut self, n: usize) {
        for (i, w) in self.0.iter_mut().enumerate() {
            let lo = i.saturating_mul(64);
            if n <= lo {
                *w = 0;
            } else if n < lo.saturating_add(64) {
                *w &= (1u64 << (n % 64)).wrapping_sub(1);
            }
        }
    }

    /// `self <<= n`, or `self |= self << n` if `keep`. In place, from the
    /// top: each word reads only words below it, not yet rewritten.
    fn up(&mut self, n: usize, keep: bool) {
        let (ws, bs) = (n / 64, (n % 64) as u32);
        for i in (0..N).rev() {
            let src = |d: usize| {
                i.checked_sub(d)
                    .and_then(|j| self.0.get(j))
                    .copied()
                    .unwrap_or(0)
            };
            let mut v = src(ws) << bs;
            if bs != 0 {
                v |= src(ws.saturating_add(1)) >> 64u32.wrapping_sub(bs);
            }
            if let Some(w) = self.0.get_mut(i) {
                *w = if keep { *w | v } else { v };
            }
        }
    }

    /// `self >>= n`, or `self |= self >> n` if `keep`; from the bottom.
    fn down(&mut self, n: usize, keep: bool) {
        let (ws, bs) = (n / 64, (n % 64) as u32);
        for i in 0..N {
            let src = |d: usize| {
                i.checked_add(d)
                    .and_then(|j| self.0.get(j))
                    .copied()
                    .unwrap_or(0)
            };
            let mut v = src(ws) >> bs;
            if bs != 0 {
                v |= src(ws.saturating_add(1)) << 64u32.wrapping_sub(bs);
            }
            if let Some(w) = self.0.get_mut(i) {
                *w = if keep { *w | v } else { v };
            }
        }
    }

    /// Where the next segment can start: each offset `o` of `seg` becomes
    /// `o + len + jump_min..=o + len + jump_max`, in about log2(spread)
    /// doubling steps rather than one per jump length.
    fn advance(&mut self, seg: &Seg) {
        self.up(seg.len.saturating_add(seg.jump_min), false);
        let spread = seg.jump_max.saturating_sub(seg.jump_min);
        let mut covered = 1usize;
        while covered <= spread {
            let step = covered.min(spread.saturating_add(1).saturating_sub(covered));
            self.up(step, true);
            covered = covered.saturating_add(step);
        }
    }

    /// The inverse: where `seg` can start given where the next one does.
    fn retreat(&mut self, seg: &Seg) {
        self.down(seg.len.saturating_add(seg.jump_min), false);
        let spread = seg.jump_max.saturating_sub(seg.jump_min);
        let mut covered = 1usize;
        while covered <= spread {
            let step = covered.min(spread.saturating_add(1).saturating_sub(covered));
            self.down(step, true);
            covered = covered.saturating_add(step);
        }
    }
}

/// Whether the segment with (value, mask) `pairs` matches `hay` at `pos`.
fn seg_matches(pairs: &[u8], hay: &[u8], pos: usize) -> bool {
    let len = pairs.len() / 2;
    let Some(bytes) = pos.checked_add(len).and_then(|end| hay.get(pos..end)) else {
        return false;
    };
    bytes
        .iter()
        .zip(pairs.chunks_exact(2))
        .all(|(&b, pair)| matches!(*pair, [value, mask] if b & mask == value))
}

/// Keep the offsets `o` of `bits` at which the segment with `pairs`
/// matches `hay` at `pos(o)`.
fn filter<const N: usize>(
    bits: &mut Bits<N>,
    pairs: &[u8],
    hay: &[u8],
    pos: impl Fn(usize) -> Option<usize>,
) {
    for (i, w) in bits.0.iter_mut().enumerate() {
        let mut rest = *w;
        while rest != 0 {
            let bit = rest.trailing_zeros();
            rest &= rest.wrapping_sub(1);
            let o = i.wrapping_mul(64).wrapping_add(us(bit));
            if !pos(o).is_some_and(|at| seg_matches(pairs, hay, at)) {
                *w &= !(1u64 << bit);
            }
        }
    }
}

/// Positions `base + o`: offsets forwards from `base`.
fn after(base: usize) -> impl Fn(usize) -> Option<usize> {
    move |o| base.checked_add(o)
}

/// Positions `base - o`: distances back from `base`.
fn before(base: usize) -> impl Fn(usize) -> Option<usize> {
    move |o| base.checked_sub(o)
}

/// Positions `base - MAX_SPAN + o`: a wide set centred on `base`.
fn around(base: usize) -> impl Fn(usize) -> Option<usize> {
    move |o| base.checked_add(o)?.checked_sub(MAX_SPAN)
}

/// Above this many possible starts, a candidate finds the starts that
/// earlier candidates report with one pass over its neighbourhood per
/// pattern, rather than evaluating the rule at each start.
const PER_START_MAX: usize = 8;

/// A pattern, from storage.
#[derive(Clone, Copy)]
struct Pattern<'a> {
    rule: usize,
    /// Its segments.
    chain: &'a [u32],
    /// Where its atom is: segment `chain[seg]`, from byte `off`, `len`
    /// bytes.
    seg: usize,
    off: usize,
    len: usize,
}

/// A candidate: pattern `p`'s atom ends at `end` (exclusive), and its
/// segment starts at `base`.
#[derive(Clone, Copy)]
struct Candidate {
    p: usize,
    end: usize,
    base: usize,
}

/// Bitmap `n` of the `starts` region at `at` of `storage`.
fn bitmap(storage: &[u32], at: usize, n: usize) -> Option<&[u32; PAIR_WORDS]> {
    let from = at.checked_add(n.checked_mul(PAIR_WORDS)?)?;
    storage.get(from..from.checked_add(PAIR_WORDS)?)?.try_into().ok()
}

/// Bit `i` (below 2^16) of a bitmap: 0 or 1.
#[inline(always)]
fn bit(map: &[u32; PAIR_WORDS], i: usize) -> u32 {
    let w = map.get((i >> 5) & (PAIR_WORDS - 1)).copied().unwrap_or(0);
    (w >> (i & 31)) & 1
}

/// Scans haystacks with a set that [`validate`] accepted and [`build`]
/// compiled.
#[derive(Clone, Copy)]
pub struct Matcher<'a> {
    view: View<'a>,
    classes: &'a [u32],
    pairs: &'a [u32; PAIR_WORDS],
    short_pairs: &'a [u32; PAIR_WORDS],
    triples: &'a [u32; PAIR_WORDS],
    rules: &'a [u32],
    patterns: &'a [u32],
    states: &'a [u32],
    outputs: &'a [u32],
    chains: &'a [u32],
    trans: &'a [u32],
    nr_classes: usize,
}

impl<'a> Matcher<'a> {
    /// A matcher over `blob` and the `storage` that [`build`] filled for it.
    /// Checks only that their sizes agree, in O(1): given anything else
    /// (another set's storage, garbage) it returns `None` or a matcher that
    /// reports wrong matches, never one that panics.
    pub fn new(blob: &'a [u8], storage: &'a [u32]) -> Option<Self> {
        let view = View::new(blob)?;
        let hdr = storage.get(..STORE_HDR)?;
        let [tag, nr_rules, nr_patterns, nr_states, nr_classes, chain_words] = *hdr else {
            return None;
        };
        if tag != STORE_TAG || us(nr_rules) != view.nr_rules || us(nr_patterns) != view.nr_patterns
        {
            return None;
        }
        let nr_classes = us(nr_classes);
        let reg = Regions::new(
            view.nr_rules,
            view.nr_patterns,
            us(nr_states),
            nr_classes,
            us(chain_words),
        )?;
        if reg.total != storage.len() {
            return None;
        }
        Some(Matcher {
            view,
            classes: storage.get(reg.classes..reg.starts)?,
            pairs: bitmap(storage, reg.starts, 0)?,
            short_pairs: bitmap(storage, reg.starts, 1)?,
            triples: bitmap(storage, reg.starts, 2)?,
            rules: storage.get(reg.rules..reg.patterns)?,
            patterns: storage.get(reg.patterns..reg.states)?,
            states: storage.get(reg.states..reg.outputs)?,
            outputs: storage.get(reg.outputs..reg.chains)?,
            chains: storage.get(reg.chains..reg.trans)?,
            trans: storage.get(reg.trans..)?,
            nr_classes,
        })
    }

    /// Rules in the set.
    pub fn nr_rules(&self) -> u32 {
        u32::try_from(self.view.nr_rules).unwrap_or(u32::MAX)
    }

    /// The name of rule `rule` (empty if there is no such rule).
    pub fn rule_name(&self, rule: u32) -> &'a [u8] {
        self.view
            .rule(us(rule))
            .and_then(|e| self.view.string(e.name_off, e.name_len))
            .unwrap_or(&[])
    }

    /// Report every match in `hay` to `on_match`, each (rule, start) once,
    /// until it returns false.
    pub fn scan(&self, hay: &[u8], on_match: &mut dyn FnMut(Match) -> bool) {
        self.scan_with(hay, on_match, PER_START_MAX);
    }

    /// [`Matcher::scan`], choosing how candidates deduplicate starts with
    /// `per_start_max` (both ways give the same matches; tests try both).
    ///
    /// Where an atom can start is found first, eight positions at a time:
    /// one lookup per position in the pair bitmap (8 KiB), independent of
    /// each other, so the CPU overlaps them, where a DFA's lookups each
    /// wait for the one before. A position it lets through is looked up in
    /// the bitmaps of short atoms' pairs and of longer atoms' triples, and
    /// only where one of those lets it through too does the trie of the
    /// atoms run, from its root, for at most [`MAX_ATOM`] bytes; each atom
    /// found there is a candidate. With 500 four-byte atoms about one
    /// position in 130 passes the first bitmap and one in 17,000 the
    /// second. Every occurrence of an atom is found once, at its start (in
    /// start order, not end order as a DFA would: a candidate's report does
    /// not depend on the order).
    fn scan_with(&self, hay: &[u8], on_match: &mut dyn FnMut(Match) -> bool, per_start_max: usize) {
        let mut at = 0usize;
        // Eight positions while their nine bytes are in the haystack.
        while let Some(w) = hay.get(at..at.saturating_add(9)) {
            let Ok(w) = <&[u8; 9]>::try_from(w) else { break };
            let mut starts = 0u32;
            for (k, pair) in w.windows(2).enumerate() {
                if let [b0, b1] = *pair {
                    starts |= bit(self.pairs, usize::from(b0) | usize::from(b1) << 8) << k;
                }
            }
            while starts != 0 {
                let k = starts.trailing_zeros() as usize;
                starts &= starts.wrapping_sub(1);
                let i = at.wrapping_add(k);
                if self.may_start(hay, i) && !self.atoms_at(hay, i, per_start_max, on_match) {
                    return;
                }
            }
            at = at.saturating_add(8);
        }
        // The last positions (a pair past the end has a zero second byte:
        // the trie walk stops at the end anyway).
        while at < hay.len() {
            let b = |i: usize| usize::from(hay.get(i).copied().unwrap_or(0));
            if bit(self.pairs, b(at) | b(at.wrapping_add(1)) << 8) != 0
                && self.may_start(hay, at)
                && !self.atoms_at(hay, at, per_start_max, on_match)
            {
                return;
            }
            at = at.wrapping_add(1);
        }
    }

    /// Whether an atom can start at `i`, whose pair is in the first bitmap:
    /// a short atom starts with its pair, or a longer one with its triple
    /// (a triple past the end of the haystack: no longer atom fits there).
    #[inline(always)]
    fn may_start(&self, hay: &[u8], i: usize) -> bool {
        let b = |k: usize| hay.get(i.wrapping_add(k)).copied().unwrap_or(0);
        let (b0, b1) = (b(0), b(1));
        bit(self.short_pairs, usize::from(b0) | usize::from(b1) << 8) != 0
            || (i.saturating_add(2) < hay.len() && bit(self.triples, triple_hash(b0, b1, b(2))) != 0)
    }

    /// The atoms that start at `start`: the trie from its root, along the
    /// haystack's bytes, for as long as it has a child for them.
    fn atoms_at(
        &self,
        hay: &[u8],
        start: usize,
        per_start_max: usize,
        on_match: &mut dyn FnMut(Match) -> bool,
    ) -> bool {
        let mut state = 0usize;
        for depth in 1..=MAX_ATOM {
            let Some(&b) = hay.get(start.wrapping_add(depth).wrapping_sub(1)) else {
                break;
            };
            let class = us(word(self.classes, usize::from(b)));
            let t = get16(
                self.trans,
                state.wrapping_mul(self.nr_classes).wrapping_add(class),
            );
            state = usize::from(t & STATE_MASK);
            let sw = state.saturating_mul(STATE_WORDS);
            // A child is one deeper (storage not from `build` may say else).
            if state == 0 || hi16(word(self.states, sw)) != depth {
                break;
            }
            let out = word(self.states, sw.saturating_add(1));
            for k in 0..hi16(out) {
                let Some(&p) = self.outputs.get(lo16(out).saturating_add(k)) else {
                    break;
                };
                let end = start.wrapping_add(depth);
                if !self.candidate(hay, end, depth, us(p), per_start_max, on_match) {
                    return false;
                }
            }
        }
        true
    }

    fn pattern(&self, p: usize) -> Option<Pattern<'a>> {
        let pw = p.checked_mul(PATTERN_WORDS)?;
        let w = self.patterns.get(pw..pw.checked_add(PATTERN_WORDS)?)?;
        let [w0, w1, w2] = *w else {
            return None;
        };
        let chain_end = lo16(w2).checked_add(hi16(w2))?;
        Some(Pattern {
            rule: lo16(w0),
            chain: self.chains.get(lo16(w2)..chain_end)?,
            seg: hi16(w0),
            off: lo16(w1),
            len: hi16(w1),
        })
    }

    /// Segment `s` and its (value, mask) pairs.
    fn seg(&self, s: u32) -> Option<(Seg, &'a [u8])> {
        let seg = self.view.segment(us(s))?;
        Some((seg, self.view.seg_bytes(&seg)?))
    }

    /// Pattern `p`'s atom ends at `end` (exclusive) and is `depth` long:
    /// verify the pattern around it, and report the starts this candidate
    /// is the first for (see the module's documentation). Out of line, like
    /// the other verification steps: their bitsets stay off the stack of
    /// the scan loop, and off each other's.
    #[inline(never)]
    fn candidate(
        &self,
        hay: &[u8],
        end: usize,
        depth: usize,
        p: usize,
        per_start_max: usize,
        on_match: &mut dyn FnMut(Match) -> bool,
    ) -> bool {
        let Some(atom) = self.pattern(p).filter(|a| a.len == depth) else {
            return true;
        };
        // Where the atom's segment starts.
        let Some(base) = end.checked_sub(depth).and_then(|a| a.checked_sub(atom.off)) else {
            return true;
        };
        let Some((prefix, from_atom)) = atom.chain.split_at_checked(atom.seg) else {
            return true;
        };
        // The rest of the pattern, from the atom's segment on.
        let Some(shortest_end) = self.tail(hay, base, from_atom) else {
            return true;
        };
        // Where it can start: distances back from `base`.
        let mut starts = Narrow::EMPTY;
        starts.set_zero();
        let mut fixed = true;
        for &s in prefix.iter().rev() {
            let Some((seg, pairs)) = self.seg(s) else {
                return true;
            };
            fixed &= seg.jump_min == seg.jump_max;
            starts.advance(&seg);
            filter(&mut starts, pairs, hay, before(base));
        }
        let Some(rule) = self.rules.get(atom.rule).copied() else {
            return true;
        };
        let at = before(base);
        let report = |start: usize, pattern: usize, end: usize| Match {
            rule: atom.rule as u32,
            pattern: pattern as u32,
            start,
            len: end.saturating_sub(start),
        };
        if hi16(rule) == 1 && fixed {
            // One pattern, one way to its atom: no other candidate for this
            // start, no other prefix.
            return match starts.min().and_then(&at) {
                Some(start) => on_match(report(start, p, shortest_end)),
                None => true,
            };
        }
        let first = lo16(rule);
        let patterns = first..first.saturating_add(hi16(rule));
        if starts.count() <= per_start_max {
            while let Some(start) = starts.pop_min().and_then(&at) {
                if let Some((q, q_end)) = self.rule_at(hay, start, rule, p, end) {
                    if !on_match(report(start, q, q_end)) {
                        return false;
                    }
                }
            }
            return true;
        }
        // `p` itself first: its earlier atoms are the likeliest to cover.
        let cand = Candidate { p, end, base };
        for q in core::iter::once(p).chain(patterns.clone().filter(|&q| q != p)) {
            self.uncover(hay, cand, q, &mut starts);
            if starts.is_empty() {
                return true;
            }
        }
        while let Some(start) = starts.pop_min().and_then(&at) {
            let best = patterns
                .clone()
                .filter_map(|q| Some((self.anchored(hay, start, q, false)?.0, q)))
                .min();
            if let Some((q_end, q)) = best {
                if !on_match(report(start, q, q_end)) {
                    return false;
                }
            }
        }
        true
    }

    /// The rule whose storage word is `rule` matches at `start`, through
    /// pattern `p` whose atom ends at `end`: if this candidate comes first
    /// (no pattern of the rule has a match from `start` whose atom ends
    /// before, none before `p` one whose atom ends at `end`), the pattern
    /// that matches shortest and the end of its match.
    fn rule_at(
        &self,
        hay: &[u8],
        start: usize,
        rule: u32,
        p: usize,
        end: usize,
    ) -> Option<(usize, usize)> {
        let (p_end, p_atom_end) = self.anchored(hay, start, p, true)?;
        if p_atom_end != end {
            return None;
        }
        let mut best = (p_end, p);
        let first = lo16(rule);
        for q in first..first.saturating_add(hi16(rule)) {
            if q == p {
                continue;
            }
            if let Some((q_end, q_atom_end)) = self.anchored(hay, start, q, true) {
                if q_atom_end < end || (q_atom_end == end && q < p) {
                    return None;
                }
                best = best.min((q_end, q));
            }
        }
        Some((best.1, best.0))
    }

    /// Pattern `q` anchored at `start`: the end of its shortest match, and
    /// if `atom`, the earliest end of its atom over all its matches from
    /// there (else 0).
    #[inline(never)]
    fn anchored(&self, hay: &[u8], start: usize, q: usize, atom: bool) -> Option<(usize, usize)> {
        let a = self.pattern(q)?;
        let (chain, t, n) = (a.chain, a.seg, a.chain.len());
        let mut offsets = Narrow::EMPTY;
        offsets.set_zero();
        let mut at_atom = Narrow::EMPTY;
        let keep = if atom { Some((t, &mut at_atom)) } else { None };
        let shortest_end = self.forward(hay, start, chain, &mut offsets, keep)?;
        if !atom {
            return Some((shortest_end, 0));
        }
        // Back from the last segment to the atom's: the offsets of each
        // segment from which the rest of the pattern matches.
        for &s in chain.get(t..n.saturating_sub(1))?.iter().rev() {
            let (seg, pairs) = self.seg(s)?;
            offsets.retreat(&seg);
            filter(&mut offsets, pairs, hay, after(start));
        }
        offsets.and(&at_atom);
        let atom_end = start
            .checked_add(offsets.min()?)?
            .checked_add(a.off)?
            .checked_add(a.len)?;
        Some((shortest_end, atom_end))
    }

    /// Drop from `starts` (distances back from the candidate's `base`)
    /// those of pattern `q`'s matches whose atom ends before the
    /// candidate's (at its end too if `q` < its pattern): an earlier
    /// candidate reports them.
    #[inline(never)]
    fn uncover(&self, hay: &[u8], cand: Candidate, q: usize, starts: &mut Narrow) {
        let mut set = Wide::EMPTY;
        if self.covered(hay, cand, q, starts, &mut set).is_some() {
            starts.retain(|d| !set.contains(MAX_SPAN.wrapping_sub(d)));
        }
    }

    /// The starts that [`Matcher::uncover`] drops, as positions in a wide
    /// set centred on `base`, in one pass backwards over the candidate's
    /// neighbourhood: where `q`'s last segment matches, where each segment
    /// before it does with the rest matching after it, down to the atom's
    /// segment (kept only where its atom ends early enough), then where
    /// the segments before it do, down to the first. A match that starts
    /// in the set lies in it: positions outside it do not matter.
    fn covered(
        &self,
        hay: &[u8],
        cand: Candidate,
        q: usize,
        starts: &Narrow,
        set: &mut Wide,
    ) -> Option<()> {
        let Candidate { p, end, base } = cand;
        let a = self.pattern(q)?;
        let (before, from_atom) = a.chain.split_at_checked(a.seg)?;
        let (&last, middle) = from_atom.split_last()?;
        // Atom segment positions y with y + off + len < end (+1 if q < p).
        let below = end
            .checked_add(usize::from(q < p))?
            .checked_add(MAX_SPAN)?
            .checked_sub(base)?
            .checked_sub(a.off)?
            .checked_sub(a.len)?;
        // Only the matches from the earliest start on matter: their last
        // segment lies between there and `below` plus the rest's span.
        let from = MAX_SPAN.saturating_sub(starts.max()?);
        let mut rest = 0usize;
        for &s in from_atom {
            let (seg, _) = self.seg(s)?;
            rest = rest.saturating_add(seg.len).saturating_add(seg.jump_max);
        }
        set.fill(from, below.saturating_add(rest));
        let (_, pairs) = self.seg(last)?;
        filter(set, pairs, hay, around(base));
        for &s in middle.iter().rev() {
            let (seg, pairs) = self.seg(s)?;
            set.retreat(&seg);
            filter(set, pairs, hay, around(base));
        }
        set.keep_below(below);
        for &s in before.iter().rev() {
            let (seg, pairs) = self.seg(s)?;
            set.retreat(&seg);
            filter(set, pairs, hay, around(base));
        }
        Some(())
    }

    /// [`Matcher::forward`] from the single offset 0: the end of the
    /// shortest match of `chain` at `base`.
    #[inline(never)]
    fn tail(&self, hay: &[u8], base: usize, chain: &[u32]) -> Option<usize> {
        let mut offsets = Narrow::EMPTY;
        offsets.set_zero();
        self.forward(hay, base, chain, &mut offsets, None)
    }

    /// Match `chain` forwards from `base`, starting with `offsets` for its
    /// first segment: the end of the shortest match, `None` if none.
    /// Leaves in `offsets` those of the last segment; `keep` receives those
    /// of one segment. Inlined into its two callers, which are out of line:
    /// one frame less on the deepest path.
    #[inline(always)]
    fn forward(
        &self,
        hay: &[u8],
        base: usize,
        chain: &[u32],
        offsets: &mut Narrow,
        mut keep: Option<(usize, &mut Narrow)>,
    ) -> Option<usize> {
        let last = chain.len().checked_sub(1)?;
        for (k, &s) in chain.iter().enumerate() {
            let (seg, pairs) = self.seg(s)?;
            filter(offsets, pairs, hay, after(base));
            if offsets.is_empty() {
                return None;
            }
            if let Some((at, kept)) = keep.as_mut() {
                if *at == k {
                    kept.0.copy_from_slice(&offsets.0);
                }
            }
            if k == last {
                return base.checked_add(offsets.min()?)?.checked_add(seg.len);
            }
            offsets.advance(&seg);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::format;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    /// A segment of a test set: (value, mask) pairs, then the jump to `next`.
    #[derive(Clone, Debug)]
    struct TSeg {
        pairs: Vec<(u8, u8)>,
        next: u16,
        jump_min: u16,
        jump_max: u16,
    }

    /// A set as tables, encoded the way the tool does (names, then
    /// segment bytes, in the strings).
    #[derive(Clone, Debug, Default)]
    struct TSet {
        rules: Vec<(Vec<u8>, u16)>,
        patterns: Vec<u16>,
        segments: Vec<TSeg>,
    }

    /// A segment's (value, mask) pairs and the jump after it.
    type HexSeg = (Vec<(u8, u8)>, u16, u16);

    /// Segments of a hex-string shorthand: `4D 5A ?? 4? [2-4] 50`.
    fn hex(src: &str) -> Vec<HexSeg> {
        let mut segs = vec![(Vec::new(), 0, 0)];
        for tok in src.split_whitespace() {
            if let Some(jump) = tok.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                let (lo, hi) = jump.split_once('-').unwrap_or((jump, jump));
                let last = segs.last_mut().unwrap();
                last.1 = lo.parse().unwrap();
                last.2 = hi.parse().unwrap();
                segs.push((Vec::new(), 0, 0));
                continue;
            }
            let nib = |c: u8| match c {
                b'?' => (0, 0),
                _ => ((c as char).to_digit(16).unwrap() as u8, 0xf),
            };
            let (hv, hm) = nib(tok.as_bytes()[0]);
            let (lv, lm) = nib(tok.as_bytes()[1]);
            let pair = ((hv << 4) | lv, (hm << 4) | lm);
            segs.last_mut().unwrap().0.push(pair);
        }
        segs
    }

    impl TSet {
        fn rule(mut self, name: &str, patterns: &[&str]) -> Self {
            self.rules.push((name.into(), patterns.len() as u16));
            for p in patterns {
                self.patterns.push(self.segments.len() as u16);
                let segs = hex(p);
                let n = segs.len();
                for (i, (pairs, jump_min, jump_max)) in segs.into_iter().enumerate() {
                    let next = if i + 1 == n {
                        END
                    } else {
                        (self.segments.len() + 1) as u16
                    };
                    self.segments.push(TSeg {
                        pairs,
                        next,
                        jump_min,
                        jump_max,
                    });
                }
            }
            self
        }

        fn encode(&self) -> Vec<u8> {
            let mut strings = Vec::new();
            let mut rules = Vec::new();
            for (name, n) in &self.rules {
                rules.extend((strings.len() as u32).to_le_bytes());
                rules.extend((name.len() as u16).to_le_bytes());
                rules.extend(n.to_le_bytes());
                strings.extend(name);
            }
            let mut segs = Vec::new();
            for s in &self.segments {
                segs.extend((strings.len() as u32).to_le_bytes());
                segs.extend((s.pairs.len() as u16).to_le_bytes());
                segs.extend(s.next.to_le_bytes());
                segs.extend(s.jump_min.to_le_bytes());
                segs.extend(s.jump_max.to_le_bytes());
                for &(v, m) in &s.pairs {
                    strings.extend([v, m]);
                }
            }
            let size =
                HEADER_SIZE + rules.len() + 4 * self.patterns.len() + segs.len() + strings.len();
            let mut blob = Vec::new();
            for v in [
                MAGIC,
                VERSION,
                size as u32,
                self.rules.len() as u32,
                self.patterns.len() as u32,
                self.segments.len() as u32,
                strings.len() as u32,
                0,
            ] {
                blob.extend(v.to_le_bytes());
            }
            blob.extend(rules);
            for p in &self.patterns {
                blob.extend(p.to_le_bytes());
                blob.extend([0, 0]);
            }
            blob.extend(segs);
            blob.extend(strings);
            assert_eq!(blob.len(), size);
            blob
        }

        /// The tables of a set that validate accepted.
        fn decode(blob: &[u8]) -> TSet {
            let view = View::new(blob).unwrap();
            let mut t = TSet::default();
            for r in 0..view.nr_rules {
                let e = view.rule(r).unwrap();
                let name = view.string(e.name_off, e.name_len).unwrap().to_vec();
                t.rules.push((name, e.nr_patterns as u16));
            }
            for p in 0..view.nr_patterns {
                t.patterns.push(view.first_segment(p).unwrap());
            }
            for s in 0..view.nr_segments {
                let seg = view.segment(s).unwrap();
                let pairs = view.seg_bytes(&seg).unwrap();
                t.segments.push(TSeg {
                    pairs: pairs.chunks(2).map(|p| (p[0], p[1])).collect(),
                    next: seg.next,
                    jump_min: seg.jump_min as u16,
                    jump_max: seg.jump_max as u16,
                });
            }
            t
        }
    }

    fn set(rules: &[(&str, &[&str])]) -> Vec<u8> {
        rules
            .iter()
            .fold(TSet::default(), |t, (name, pats)| t.rule(name, pats))
            .encode()
    }

    /// Everything a scan reports, sorted, checking that no (rule, start)
    /// comes twice.
    fn scan(blob: &[u8], hay: &[u8]) -> Vec<Match> {
        let info = validate(blob).unwrap();
        let mut storage = vec![0u32; info.storage_words];
        build(blob, &mut storage).unwrap();
        let matcher = Matcher::new(blob, &storage).unwrap();
        let mut results = [0, PER_START_MAX, usize::MAX].map(|per_start_max| {
            let mut out = Vec::new();
            matcher.scan_with(
                hay,
                &mut |m| {
                    out.push(m);
                    true
                },
                per_start_max,
            );
            out.sort_by_key(|m| (m.rule, m.start));
            let mut keys: Vec<_> = out.iter().map(|m| (m.rule, m.start)).collect();
            keys.dedup();
            assert_eq!(
                keys.len(),
                out.len(),
                "a (rule, start) reported twice: {out:?}"
            );
            out
        });
        assert_eq!(results[0], results[1], "per start vs neighbourhood");
        assert_eq!(results[0], results[2], "per start vs neighbourhood");
        core::mem::take(&mut results[1])
    }

    fn starts(blob: &[u8], hay: &[u8]) -> Vec<(u32, usize, usize)> {
        scan(blob, hay)
            .iter()
            .map(|m| (m.rule, m.start, m.len))
            .collect()
    }

    /// The end of the shortest match of the chain from segment `s` at `pos`.
    fn shortest(
        t: &TSet,
        s: usize,
        hay: &[u8],
        pos: usize,
        memo: &mut HashMap<(usize, usize), Option<usize>>,
    ) -> Option<usize> {
        if let Some(&r) = memo.get(&(s, pos)) {
            return r;
        }
        let seg = &t.segments[s];
        let end = pos + seg.pairs.len();
        let r = if end <= hay.len()
            && seg
                .pairs
                .iter()
                .enumerate()
                .all(|(i, &(v, m))| hay[pos + i] & m == v)
        {
            if seg.next == END {
                Some(end)
            } else {
                (seg.jump_min..=seg.jump_max)
                    .filter_map(|j| shortest(t, seg.next as usize, hay, end + j as usize, memo))
                    .min()
            }
        } else {
            None
        };
        memo.insert((s, pos), r);
        r
    }

    /// What a scan must report, by brute force over every start.
    fn reference(t: &TSet, hay: &[u8]) -> Vec<Match> {
        let mut memo = HashMap::new();
        let mut out = Vec::new();
        let mut first = 0;
        for (r, (_, n)) in t.rules.iter().enumerate() {
            let n = *n as usize;
            for start in 0..hay.len() {
                let best = (first..first + n)
                    .filter_map(|p| {
                        shortest(t, t.patterns[p] as usize, hay, start, &mut memo)
                            .map(|end| (end - start, p))
                    })
                    .min();
                if let Some((len, p)) = best {
                    out.push(Match {
                        rule: r as u32,
                        pattern: p as u32,
                        start,
                        len,
                    });
                }
            }
            first += n;
        }
        out
    }

    /// xorshift64*.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[self.below(from.len())]
        }
    }

    /// Bytes whose nibbles overlap, so that masks and full bytes both
    /// match often.
    const ALPHABET: [u8; 4] = [0x41, 0x42, 0x61, 0x4f];

    /// A random valid set; some patterns start in the middle of an
    /// earlier pattern's chain (shared segments).
    fn random_set(rng: &mut Rng, max_jump: usize) -> TSet {
        let mut t = TSet::default();
        for r in 0..1 + rng.below(4) {
            let n = 1 + rng.below(3);
            let mut made = 0;
            while made < n {
                if !t.segments.is_empty() && rng.below(5) == 0 {
                    let s = rng.below(t.segments.len());
                    let mut anchored = false;
                    let mut i = s;
                    loop {
                        anchored |= t.segments[i].pairs.iter().any(|p| p.1 == 0xff);
                        if t.segments[i].next == END {
                            break;
                        }
                        i = t.segments[i].next as usize;
                    }
                    if anchored {
                        t.patterns.push(s as u16);
                        made += 1;
                    }
                    continue;
                }
                t.patterns.push(t.segments.len() as u16);
                let nsegs = 1 + rng.below(3);
                let fixed_at = (rng.below(nsegs), rng.below(4));
                for k in 0..nsegs {
                    let len = 1 + rng.below(4);
                    let mut pairs = Vec::new();
                    for i in 0..len {
                        let mut mask = rng.pick(&[0xff, 0xff, 0xff, 0xf0, 0x0f, 0x00]);
                        if (k, i.min(len - 1)) == (fixed_at.0, fixed_at.1.min(len - 1)) {
                            mask = 0xff;
                        }
                        pairs.push((rng.pick(&ALPHABET) & mask, mask));
                    }
                    let last = k + 1 == nsegs;
                    let jump_min = if last { 0 } else { rng.below(max_jump + 1) };
                    let jump_max = if last {
                        0
                    } else {
                        jump_min + rng.below(max_jump + 1)
                    };
                    t.segments.push(TSeg {
                        pairs,
                        next: if last {
                            END
                        } else {
                            (t.segments.len() + 1) as u16
                        },
                        jump_min: jump_min as u16,
                        jump_max: jump_max as u16,
                    });
                }
                made += 1;
            }
            t.rules.push((format!("r{r}").into_bytes(), n as u16));
        }
        t
    }

    /// How many random cases to run: `scale` times
    /// `PFI_SIGS_ITERATIONS` (default 1) for a deeper search.
    fn iterations(scale: usize) -> usize {
        let factor = std::env::var("PFI_SIGS_ITERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        scale * factor
    }

    fn random_hay(rng: &mut Rng, max: usize) -> Vec<u8> {
        (0..rng.below(max + 1))
            .map(|_| rng.pick(&ALPHABET))
            .collect()
    }

    #[test]
    fn limits_match_the_uapi_header() {
        let header = include_str!("../../include/uapi/linux/kvm_pfi.h");
        let define = |name: &str| -> u64 {
            let line = header
                .lines()
                .find(|l| l.split_whitespace().nth(1) == Some(name))
                .unwrap_or_else(|| panic!("{name} not in the header"));
            let value = line.split_whitespace().nth(2).unwrap();
            let value = value.trim_start_matches('(').trim_end_matches('U');
            if let Some(hex) = value.strip_prefix("0x") {
                u64::from_str_radix(hex, 16).unwrap()
            } else if let Some(shift) = value.strip_prefix("1U") {
                1 << shift
                    .trim_start_matches(" <<")
                    .trim()
                    .trim_end_matches(')')
                    .parse::<u32>()
                    .unwrap()
            } else {
                value.parse().unwrap()
            }
        };
        assert_eq!(define("KVM_PFI_SIGS_MAGIC"), MAGIC.into());
        assert_eq!(define("KVM_PFI_SIGS_VERSION"), VERSION.into());
        assert_eq!(define("KVM_PFI_SIG_END"), END.into());
        for (name, value) in [
            ("KVM_PFI_SIGS_MAX_RULES", MAX_RULES),
            ("KVM_PFI_SIGS_MAX_PATTERNS", MAX_PATTERNS),
            ("KVM_PFI_SIGS_MAX_SEGMENTS", MAX_SEGMENTS),
            ("KVM_PFI_SIG_MAX_PATTERNS", MAX_RULE_PATTERNS),
            ("KVM_PFI_SIG_MAX_SEGMENTS", MAX_CHAIN),
            ("KVM_PFI_SIG_MAX_JUMP", MAX_JUMP),
            ("KVM_PFI_SIG_MAX_SPAN", MAX_SPAN),
            ("KVM_PFI_SIG_NAME_MAX", NAME_MAX),
        ] {
            assert_eq!(define(name), value as u64, "{name}");
        }
        // "(1U << 20)" has a space inside: read it by hand.
        assert!(header.contains("#define KVM_PFI_SIGS_MAX_SIZE\t\t(1U << 20)"));
        assert_eq!(MAX_SIZE, 1 << 20);
        assert_eq!(MAGIC.to_le_bytes(), *b"KPFS");
    }

    #[test]
    fn finds_at_start_middle_and_end() {
        let blob = set(&[("demo", &["4B 56 4D"])]);
        assert_eq!(starts(&blob, b"KVM....."), [(0, 0, 3)]);
        assert_eq!(starts(&blob, b"..KVM..."), [(0, 2, 3)]);
        assert_eq!(starts(&blob, b".....KVM"), [(0, 5, 3)]);
        assert_eq!(starts(&blob, b"KVMKVM"), [(0, 0, 3), (0, 3, 3)]);
        assert_eq!(starts(&blob, b"KV"), []);
        assert_eq!(starts(&blob, b""), []);
    }

    #[test]
    fn same_start_is_reported_once_with_the_shortest_length() {
        // Two patterns of one rule at the same start: one match, the shorter.
        let blob = set(&[("two", &["41 42 43 44", "41 42"])]);
        let m = scan(&blob, b"xABCDx");
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].start, m[0].len, m[0].pattern), (1, 2, 1));
        // Several jump choices before the atom (4? then 0..=2 bytes, then
        // "AA"): one match per start.
        let blob = set(&[("jumps", &["4? [0-2] 41 41"])]);
        assert_eq!(starts(&blob, b"@AAAA"), [(0, 0, 3), (0, 1, 3), (0, 2, 3)]);
        // Jump choices after the atom: the shortest.
        let blob = set(&[("tail", &["41 41 [0-4] 42"])]);
        assert_eq!(starts(&blob, b"AAxBB"), [(0, 0, 4)]);
    }

    #[test]
    fn stops_when_told() {
        let blob = set(&[("a", &["41"])]);
        let info = validate(&blob).unwrap();
        let mut storage = vec![0; info.storage_words];
        build(&blob, &mut storage).unwrap();
        let m = Matcher::new(&blob, &storage).unwrap();
        let mut n = 0;
        m.scan(b"AAAA", &mut |_| {
            n += 1;
            false
        });
        assert_eq!(n, 1);
        assert_eq!(m.nr_rules(), 1);
        assert_eq!(m.rule_name(0), b"a");
        assert_eq!(m.rule_name(1), b"");
    }

    #[test]
    fn storage_must_fit() {
        let blob = set(&[("a", &["41 42"])]);
        let other = set(&[("a", &["41 42"]), ("b", &["43"])]);
        let info = validate(&blob).unwrap();
        let mut short = vec![0; info.storage_words - 1];
        let err = SigError::new(SigErrorKind::Malformed, 0);
        assert_eq!(build(&blob, &mut short), Err(err));
        assert!(Matcher::new(&blob, &short).is_none());
        let mut storage = vec![0; info.storage_words];
        assert!(Matcher::new(&blob, &storage).is_none(), "unbuilt");
        build(&blob, &mut storage).unwrap();
        assert!(Matcher::new(&other, &storage).is_none());
        assert!(Matcher::new(&blob[..20], &storage).is_none());
    }

    #[test]
    fn random_sets_match_the_reference() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut matches = 0;
        for case in 0..iterations(2000) {
            // Mostly short jumps, so that jump choices collide often; some
            // long ones over longer haystacks.
            let (max_jump, max_hay) = if case % 8 == 7 { (40, 200) } else { (3, 64) };
            let t = random_set(&mut rng, max_jump);
            let blob = t.encode();
            for _ in 0..4 {
                let hay = random_hay(&mut rng, max_hay);
                let want = reference(&t, &hay);
                assert_eq!(scan(&blob, &hay), want, "case {case}: {t:?} on {hay:x?}");
                matches += want.len();
            }
        }
        assert!(matches > 5_000, "too few matches to mean much: {matches}");
    }

    /// Atoms of every length at every place of short haystacks: the first
    /// and last bytes, and each side of the scan's eight-position groups
    /// (whose pair and triple lookups read one and two bytes past them).
    #[test]
    fn atoms_of_every_length_at_every_position() {
        let t = TSet::default()
            .rule("one", &["c1"])
            .rule("two", &["d1 d2"])
            .rule("three", &["e1 e2 e3"])
            .rule("four", &["f1 f2 f3 f4"])
            // Shares its first pair with "four", not its triple.
            .rule("four_b", &["f1 f2 a3 a4"]);
        let blob = t.encode();
        let atoms: [&[u8]; 5] = [b"\xc1", b"\xd1\xd2", b"\xe1\xe2\xe3", b"\xf1\xf2\xf3\xf4", b"\xf1\xf2\xa3\xa4"];
        for len in 0..=26usize {
            for atom in atoms {
                for at in (0..=len).take_while(|at| at + atom.len() <= len) {
                    let mut hay = vec![0u8; len];
                    hay[at..at + atom.len()].copy_from_slice(atom);
                    let want = reference(&t, &hay);
                    assert_eq!(want.len(), 1, "{hay:x?}");
                    assert_eq!(scan(&blob, &hay), want, "{hay:x?}");
                }
            }
        }
        // An atom's first three bytes without its fourth: nothing.
        assert_eq!(scan(&blob, b"\xf1\xf2\xf3\x00\xf1\xf2"), []);
    }

    #[test]
    fn straddling_match_needs_both_pages() {
        let blob = set(&[("across", &["41 42 [4-8] 43 44"])]);
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        a[4093..].copy_from_slice(b"xAB");
        b[..6].copy_from_slice(b"....CD");
        assert_eq!(starts(&blob, &a), []);
        assert_eq!(starts(&blob, &b), []);
        let both = [a, b].concat();
        assert_eq!(starts(&blob, &both), [(0, 4094, 8)]);
    }

    #[test]
    fn worst_case_storage() {
        // 1024 patterns of four fixed bytes, over all 256 byte values.
        let mut t = TSet::default();
        for r in 0..MAX_RULES {
            let b = |k: usize| format!("{:02x}", ((r * 4 + k) % 256) ^ (r / 64));
            let p = format!("{} {} {} {}", b(0), b(1), b(2), b(3));
            t = t.rule(&format!("r{r}"), &[&p]);
        }
        let blob = t.encode();
        let info = validate(&blob).unwrap();
        // Everything at its maximum but the chains, of one segment each.
        let short_chains = (MAX_CHAIN - 1) * MAX_PATTERNS;
        assert_eq!(info.storage_words, MAX_STORAGE_WORDS - short_chains);
        assert_eq!(MAX_STORAGE_WORDS, 581_001);
        let hay: Vec<u8> = (0..=255u8).collect();
        assert_eq!(scan(&blob, &hay), reference(&t, &hay));
        assert_eq!(scan(&blob, &hay).len(), 256);
    }

    /// Offsets in the set built by `base()`.
    const RULE0: usize = HEADER_SIZE;
    const RULE1: usize = RULE0 + RULE_SIZE;
    const PAT0: usize = RULE1 + RULE_SIZE;
    const SEG0: usize = PAT0 + 3 * PATTERN_SIZE;
    const STRINGS: usize = SEG0 + 5 * SEGMENT_SIZE;

    /// Rule "first": `41 42 [1-3] 43` (segments 0, 1) and `44 4? 45`
    /// (segment 2); rule "second": `46 [2] ?? 47` (segments 3, 4).
    fn base() -> Vec<u8> {
        set(&[
            ("first", &["41 42 [1-3] 43", "44 4? 45"]),
            ("second", &["46 [2] ?? 47"]),
        ])
    }

    fn with(blob: &[u8], off: usize, bytes: &[u8]) -> Vec<u8> {
        let mut b = blob.to_vec();
        b[off..off + bytes.len()].copy_from_slice(bytes);
        b
    }

    fn fails(blob: &[u8], kind: SigErrorKind, offset: usize) {
        assert_eq!(validate(blob), Err(SigError { kind, offset }));
        let mut storage = vec![0; 64];
        assert_eq!(build(blob, &mut storage), Err(SigError { kind, offset }));
    }

    #[test]
    fn base_is_valid() {
        let blob = base();
        let info = validate(&blob).unwrap();
        assert_eq!(
            (info.nr_rules, info.nr_patterns, info.nr_segments),
            (2, 3, 5)
        );
        assert_eq!(info.size as usize, blob.len());
        assert_eq!(&blob[STRINGS..STRINGS + 11], b"firstsecond");
        assert_eq!(
            starts(&blob, b"AB.C DAE F..xG"),
            [(0, 0, 4), (0, 5, 3), (1, 9, 5)]
        );
    }

    #[test]
    fn header_errors() {
        use SigErrorKind::*;
        let b = base();
        let n = |v: u32| v.to_le_bytes();
        fails(&[], Empty, 0);
        fails(&vec![0; MAX_SIZE + 1], TooLarge, 8);
        fails(&with(&b, 0, b"KPFT"), Malformed, 0);
        fails(&with(&b, 4, &n(2)), Version, 4);
        fails(&with(&b, 8, &n(b.len() as u32 + 1)), Malformed, 8);
        fails(&with(&b, 8, &n(0)), Malformed, 8);
        fails(&with(&b, 12, &n(0)), Empty, 12);
        fails(&with(&b, 12, &n(1025)), TooLarge, 12);
        fails(&with(&b, 12, &n(u32::MAX)), TooLarge, 12);
        fails(&with(&b, 16, &n(1025)), TooLarge, 16);
        fails(&with(&b, 20, &n(8193)), TooLarge, 20);
        fails(&with(&b, 24, &n(12)), Malformed, 24);
        fails(&with(&b, 24, &n(u32::MAX)), Malformed, 24);
        fails(&with(&b, 12, &n(3)), Malformed, 24);
        fails(&with(&b, 28, &n(1)), Malformed, 28);
        // Trailing bytes, counted in size but not in any table.
        let mut long = b.clone();
        long.push(0);
        let long = with(&long, 8, &n(long.len() as u32));
        fails(&long, Malformed, 24);
    }

    #[test]
    fn truncated_at_every_length() {
        let b = base();
        fails(&b[..0], SigErrorKind::Empty, 0);
        for len in 1..b.len() {
            let err = validate(&b[..len]).unwrap_err();
            assert_eq!(err.kind, SigErrorKind::Malformed, "length {len}");
            assert_eq!(err.offset, [0, 4, 8][(len / 4).min(2)], "length {len}");
        }
    }

    #[test]
    fn rule_errors() {
        use SigErrorKind::*;
        let b = base();
        let n16 = |v: u16| v.to_le_bytes();
        fails(&with(&b, RULE0, &1000u32.to_le_bytes()), Malformed, RULE0);
        // "second" at 25: its end past the 29 bytes of strings.
        fails(&with(&b, RULE1, &25u32.to_le_bytes()), Malformed, RULE1);
        fails(&with(&b, RULE0 + 4, &n16(0)), Malformed, RULE0 + 4);
        fails(&with(&b, RULE0 + 4, &n16(64)), Malformed, RULE0 + 4);
        fails(&with(&b, STRINGS, b"1"), Malformed, STRINGS);
        fails(&with(&b, STRINGS + 2, b"-"), Malformed, STRINGS + 2);
        fails(&with(&b, STRINGS + 7, b"\xc3"), Malformed, STRINGS + 7);
        fails(&with(&b, RULE0 + 6, &n16(0)), Malformed, RULE0 + 6);
        fails(&with(&b, RULE0 + 6, &n16(17)), TooLarge, RULE0 + 6);
        fails(&with(&b, RULE0 + 6, &n16(3)), Malformed, RULE1 + 6);
        fails(&with(&b, RULE0 + 6, &n16(1)), Malformed, 16);
        // Digits are fine after the first character, and 63 bytes too.
        let long = "a".repeat(NAME_MAX);
        let ok = set(&[("_9", &["41"]), (&long, &["41"])]);
        assert_eq!(starts(&ok, b"A"), [(0, 0, 1), (1, 0, 1)]);
    }

    #[test]
    fn pattern_and_segment_errors() {
        use SigErrorKind::*;
        let b = base();
        let n16 = |v: u16| v.to_le_bytes();
        let seg = |i: usize| SEG0 + i * SEGMENT_SIZE;
        let pairs = |i: usize| STRINGS + 11 + 2 * i;
        fails(&with(&b, PAT0 + 4, &n16(5)), Malformed, PAT0 + 4);
        fails(&with(&b, PAT0 + 6, &n16(1)), Malformed, PAT0 + 6);
        fails(&with(&b, seg(1), &1000u32.to_le_bytes()), Malformed, seg(1));
        fails(&with(&b, seg(1) + 4, &n16(0)), Malformed, seg(1) + 4);
        fails(&with(&b, seg(4) + 4, &n16(3)), Malformed, seg(4));
        // Segment 2 is `44 4? 45`: its second value has a bit outside 0xf0.
        fails(&with(&b, pairs(4), &[0x41, 0xf0]), Malformed, pairs(4));
        fails(&with(&b, pairs(5), &[0x45, 0x0f]), Malformed, pairs(5));
        fails(&with(&b, pairs(3) + 1, &[0xf0]), Malformed, pairs(3));
        // A wildcard byte with a value.
        fails(&with(&b, pairs(7), &[1]), Malformed, pairs(7));
        // Chains: backwards or onto itself loop; past the table is out of
        // bounds.
        fails(&with(&b, seg(3) + 6, &n16(3)), Loop, seg(3) + 6);
        fails(&with(&b, seg(3) + 6, &n16(0)), Loop, seg(3) + 6);
        fails(&with(&b, seg(3) + 6, &n16(5)), Malformed, seg(3) + 6);
        // Jumps: only between segments, min <= max <= 256.
        fails(&with(&b, seg(1) + 8, &n16(1)), Malformed, seg(1) + 8);
        fails(&with(&b, seg(1) + 10, &n16(1)), Malformed, seg(1) + 10);
        fails(&with(&b, seg(0) + 8, &n16(4)), Malformed, seg(0) + 8);
        fails(&with(&b, seg(0) + 10, &n16(257)), Malformed, seg(0) + 10);
        fails(&with(&b, seg(0) + 8, &[1, 1, 1, 1]), Malformed, seg(0) + 10);
        let ok = with(&b, seg(0) + 8, &[0, 1, 0, 1]);
        assert!(validate(&ok).is_ok(), "a 256-byte jump is allowed");
        // A segment pointing further on, skipping one: valid (segment 1
        // becomes unused, which is fine).
        assert!(validate(&with(&b, seg(0) + 6, &n16(2))).is_ok());
    }

    #[test]
    fn chain_errors() {
        use SigErrorKind::*;
        // Nothing to anchor on.
        let b = set(&[("ok", &["41"]), ("wild", &["4? ?? [1] ?1"])]);
        fails(&b, Malformed, HEADER_SIZE + 2 * RULE_SIZE + PATTERN_SIZE);
        // 32 segments are fine, 33 too many: blamed on the 32nd's next.
        let chain = |n: usize| vec!["41"; n].join(" [0] ");
        assert!(validate(&set(&[("c", &[&chain(32)])])).is_ok());
        let segs = HEADER_SIZE + RULE_SIZE + PATTERN_SIZE;
        fails(
            &set(&[("c", &[&chain(33)])]),
            TooLarge,
            segs + 31 * SEGMENT_SIZE + 6,
        );
        // Span: 4 + 3 * 256 + 256 = 1028 at the fourth segment's jump_max.
        let far = ["41"; 5].join(" [256] ");
        fails(
            &set(&[("far", &[&far])]),
            TooLarge,
            segs + 3 * SEGMENT_SIZE + 10,
        );
        let wide = vec!["41"; 1025].join(" ");
        fails(&set(&[("wide", &[&wide])]), TooLarge, segs + 4);
        let exact = format!("{} [0-24] 42", vec!["41"; 999].join(" "));
        let b = set(&[("exact", &[&exact])]);
        assert!(validate(&b).is_ok(), "a span of exactly 1024");
        let hay = [vec![0x41; 999], vec![0; 24], vec![0x42]].concat();
        assert_eq!(starts(&b, &hay), [(0, 0, 1024)]);
        // Too many rules, patterns per rule.
        let many: Vec<(String, Vec<&str>)> =
            (0..1025).map(|i| (format!("r{i}"), vec!["41"])).collect();
        let mut t = TSet::default();
        for (name, pats) in &many {
            t = t.rule(name, pats);
        }
        fails(&t.encode(), TooLarge, 12);
        let b = set(&[("r", &["41"; 17])]);
        fails(&b, TooLarge, HEADER_SIZE + 6);
    }

    /// Mutations of valid sets: validate never panics, and whatever it
    /// accepts builds and scans as the reference says.
    #[test]
    fn mutated_sets() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut accepted = 0;
        let mut refused = [0usize; 5];
        for _ in 0..iterations(3000) {
            let t = random_set(&mut rng, 6);
            let mut blob = t.encode();
            for _ in 0..1 + rng.below(3) {
                let len = blob.len();
                match rng.below(8) {
                    0 => blob[rng.below(len)] ^= 1 << rng.below(8),
                    1 => blob[rng.below(len)] = rng.next() as u8,
                    2 => {
                        let at = rng.below(len.saturating_sub(1)) & !1;
                        if at + 2 > len {
                            continue;
                        }
                        let v: u16 = rng.pick(&[0, 1, 2, 3, 0xff, 0x100, 0x101, END, 0x7fff]);
                        blob[at..at + 2].copy_from_slice(&v.to_le_bytes());
                    }
                    3 => blob.truncate(rng.below(len)),
                    4 => blob.extend((0..rng.below(8)).map(|_| rng.next() as u8)),
                    5 | 6 => {
                        // Rewrite one (value, mask) pair or jump
                        // consistently, so that the set is often still valid.
                        let Some(view) = View::new(&blob) else {
                            continue;
                        };
                        if view.nr_segments == 0 {
                            continue;
                        }
                        let s = rng.below(view.nr_segments);
                        let Some(seg) = view.segment(s) else { continue };
                        if seg.len > 0 && rng.below(2) == 0 {
                            let at = view.strings + seg.bytes_off + 2 * rng.below(seg.len);
                            let mask = rng.pick(&[0xff, 0xf0, 0x0f, 0x00]);
                            if at + 2 <= blob.len() {
                                blob[at] = rng.pick(&ALPHABET) & mask;
                                blob[at + 1] = mask;
                            }
                        } else if seg.next != END {
                            let lo = rng.below(5) as u16;
                            let hi = lo + rng.below(5) as u16;
                            let at = view.segment_off(s) + S_JUMP_MIN;
                            blob[at..at + 2].copy_from_slice(&lo.to_le_bytes());
                            blob[at + 2..at + 4].copy_from_slice(&hi.to_le_bytes());
                        }
                    }
                    _ => {
                        // Keep size consistent so that deeper checks run.
                        if len > HEADER_SIZE {
                            let at = HEADER_SIZE + rng.below(len - HEADER_SIZE);
                            blob[at] = rng.pick(&[0, 1, 0x41, 0xff, 0x0f, 0xf0]);
                        }
                    }
                }
                if blob.is_empty() {
                    break;
                }
            }
            match validate(&blob) {
                Ok(info) => {
                    accepted += 1;
                    let mut storage = vec![0; info.storage_words];
                    build(&blob, &mut storage).unwrap();
                    let m = Matcher::new(&blob, &storage).unwrap();
                    let t = TSet::decode(&blob);
                    for _ in 0..3 {
                        let hay = random_hay(&mut rng, 80);
                        assert_eq!(scan(&blob, &hay), reference(&t, &hay), "{t:?} {hay:x?}");
                        m.scan(&hay, &mut |_| true);
                    }
                }
                Err(e) => refused[e.kind as usize] += 1,
            }
        }
        assert!(accepted > 300, "accepted {accepted}");
        assert!(refused.iter().all(|&n| n > 0), "refused {refused:?}");
    }

    /// Storage that build did not fill: no panic, whatever it holds.
    #[test]
    fn garbage_storage() {
        let mut rng = Rng(42);
        for _ in 0..iterations(100) {
            let t = random_set(&mut rng, 5);
            let blob = t.encode();
            let info = validate(&blob).unwrap();
            let mut storage = vec![0; info.storage_words];
            build(&blob, &mut storage).unwrap();
            for _ in 0..20 {
                let mut bad = storage.clone();
                for _ in 0..1 + rng.below(8) {
                    let i = STORE_HDR + rng.below(bad.len() - STORE_HDR);
                    bad[i] = match rng.below(3) {
                        0 => rng.next() as u32,
                        1 => bad[i] ^ (1 << rng.below(32)),
                        _ => rng.pick(&[0, 1, 0xffff, 0x8000_8000, u32::MAX]),
                    };
                }
                let m = Matcher::new(&blob, &bad).unwrap();
                let hay: Vec<u8> = (0..200).map(|_| rng.pick(&ALPHABET)).collect();
                m.scan(&hay, &mut |_| true);
                // A corrupted set over good storage.
                let mut other = blob.clone();
                let at = HEADER_SIZE + rng.below(blob.len() - HEADER_SIZE);
                other[at] = rng.next() as u8;
                if let Some(m) = Matcher::new(&other, &storage) {
                    m.scan(&hay, &mut |_| true);
                    let _ = m.rule_name(rng.below(8) as u32);
                }
            }
        }
    }
}
