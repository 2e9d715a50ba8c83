// SPDX-License-Identifier: GPL-2.0

//! The text rule format, compiled into the binary layout of [`crate::sigs`].
//!
//! Host only (it allocates): the `text` feature of this crate, for the
//! `kvm-pfi` tool. The format is a subset of YARA, so that a rule file also
//! works with YARA and yara-x:
//!
//! ```text
//! // line and /* block */ comments
//! rule demo_marker : optional tags {
//!     meta:                       // optional, ignored
//!         author = "x"
//!     strings:
//!         $a = { 4D 5A ?? ?? [2-4] 50 45 }
//!         $b = "KVM-PFI-DEMO"
//!     condition:
//!         any of them
//! }
//! ```
//!
//! - Hex strings: bytes `XX`, wildcards `??`, nibble wildcards `X?` and
//!   `?X`, bounded jumps `[n]` and `[n-m]` (`n <= m <= 256`) between
//!   bytes. No alternatives `( | )`, no unbounded jumps, no `~`.
//! - Text strings: escapes `\"`, `\\`, `\n`, `\t`, `\r`, `\xNN`; no
//!   modifiers (`nocase`, `wide`, ...).
//! - Conditions: `any of them`, `$a`, or `$a or $b ...` naming every string
//!   of the rule: a rule matches where any of its strings does.
//! - Names are YARA identifiers of at most [`sigs::NAME_MAX`] bytes; rule
//!   names and a rule's string names are unique.
//!
//! Everything else YARA has (imports, includes, `private` and `global`
//! rules, other conditions, regular expressions) is refused with a message
//! saying so, at its line and column.

use crate::sigs;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// One element of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// A byte `b` matches when `b & mask == value`.
    Byte {
        /// The bits to compare (none outside `mask`).
        value: u8,
        /// The bits that matter.
        mask: u8,
    },
    /// Between `min` and `max` bytes of anything.
    Jump {
        /// At least this many bytes.
        min: u16,
        /// At most this many, up to [`sigs::MAX_JUMP`].
        max: u16,
    },
}

/// A rule: its name, and its patterns, any of which makes it match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// The rule's name.
    pub name: String,
    /// Each pattern: runs of [`Token::Byte`] separated by single
    /// [`Token::Jump`]s.
    pub patterns: Vec<Vec<Token>>,
}

/// An error in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.msg)
    }
}

impl core::error::Error for TextError {}

/// A compiled rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// The set, in the binary layout; [`sigs::validate`] accepts it.
    pub blob: Vec<u8>,
    /// The rules it holds, in order (rule `i` of the set is `rules[i]`).
    pub rules: Vec<RuleSpec>,
}

/// YARA's keywords, which cannot name a rule.
const KEYWORDS: &[&str] = &[
    "all",
    "and",
    "any",
    "ascii",
    "at",
    "base64",
    "base64wide",
    "condition",
    "contains",
    "defined",
    "endswith",
    "entrypoint",
    "false",
    "filesize",
    "for",
    "fullword",
    "global",
    "iendswith",
    "icontains",
    "iequals",
    "import",
    "in",
    "include",
    "int16",
    "int16be",
    "int32",
    "int32be",
    "int8",
    "int8be",
    "istartswith",
    "matches",
    "meta",
    "nocase",
    "none",
    "not",
    "of",
    "or",
    "private",
    "rule",
    "startswith",
    "strings",
    "them",
    "true",
    "uint16",
    "uint16be",
    "uint32",
    "uint32be",
    "uint8",
    "uint8be",
    "wide",
    "xor",
];

/// YARA's string modifiers, none of which is supported.
const MODIFIERS: &[&str] = &[
    "nocase",
    "wide",
    "ascii",
    "xor",
    "base64",
    "base64wide",
    "fullword",
    "private",
];

/// Parse a rule file.
pub fn parse(src: &str) -> Result<Vec<RuleSpec>, TextError> {
    Ok(Parser::new(src)
        .file()?
        .into_iter()
        .map(|r| r.spec)
        .collect())
}

/// Encode rules in the binary layout: names, then each segment's (value,
/// mask) pairs, in the strings; segments in pattern order, each pattern's
/// chain consecutive. Refuses what [`sigs::validate`] would, with a message
/// naming the rule and pattern.
pub fn encode(rules: &[RuleSpec]) -> Result<Vec<u8>, String> {
    if rules.is_empty() {
        return Err("no rules".into());
    }
    if rules.len() > sigs::MAX_RULES {
        return Err(format!("more than {} rules", sigs::MAX_RULES));
    }
    let mut names: Vec<u8> = Vec::new();
    let mut rule_table = Vec::new();
    let mut pattern_table = Vec::new();
    // (pairs, jump_min, jump_max, last) of every segment.
    let mut segments: Vec<(Vec<u8>, u16, u16, bool)> = Vec::new();
    for rule in rules {
        check_name(&rule.name).map_err(|e| format!("rule '{}': {}", rule.name, e))?;
        let n = rule.patterns.len();
        if n == 0 || n > sigs::MAX_RULE_PATTERNS {
            return Err(format!(
                "rule '{}': {} patterns, not 1 to {}",
                rule.name,
                n,
                sigs::MAX_RULE_PATTERNS
            ));
        }
        rule_table.extend(le32(names.len())?);
        rule_table.extend((rule.name.len() as u16).to_le_bytes());
        rule_table.extend((n as u16).to_le_bytes());
        names.extend(rule.name.as_bytes());
        for (i, pattern) in rule.patterns.iter().enumerate() {
            let mut segs = split_pattern(pattern).map_err(|e| {
                format!(
                    "rule '{}', pattern {}: {}",
                    rule.name,
                    i.saturating_add(1),
                    e
                )
            })?;
            let first = u16::try_from(segments.len()).map_err(|_| too_many_segments())?;
            pattern_table.extend(first.to_le_bytes());
            pattern_table.extend([0, 0]);
            let last = segs.pop();
            for (pairs, min, max) in segs {
                segments.push((pairs, min, max, false));
            }
            if let Some((pairs, min, max)) = last {
                segments.push((pairs, min, max, true));
            }
        }
    }
    let nr_patterns = pattern_table.len() / sigs::PATTERN_SIZE;
    if nr_patterns > sigs::MAX_PATTERNS {
        return Err(format!("more than {} patterns", sigs::MAX_PATTERNS));
    }
    if segments.len() > sigs::MAX_SEGMENTS {
        return Err(too_many_segments());
    }
    let mut strings = names;
    let mut segment_table = Vec::new();
    for (i, (pairs, min, max, last)) in segments.iter().enumerate() {
        segment_table.extend(le32(strings.len())?);
        segment_table.extend(((pairs.len() / 2) as u16).to_le_bytes());
        let next = if *last {
            sigs::END
        } else {
            u16::try_from(i.saturating_add(1)).map_err(|_| too_many_segments())?
        };
        segment_table.extend(next.to_le_bytes());
        segment_table.extend(min.to_le_bytes());
        segment_table.extend(max.to_le_bytes());
        strings.extend(pairs);
    }
    let size = [
        rule_table.len(),
        pattern_table.len(),
        segment_table.len(),
        strings.len(),
    ]
    .iter()
    .fold(sigs::HEADER_SIZE, |a, b| a.saturating_add(*b));
    if size > sigs::MAX_SIZE {
        return Err(format!(
            "the set needs {} bytes, more than {}",
            size,
            sigs::MAX_SIZE
        ));
    }
    let mut blob = Vec::with_capacity(size);
    for v in [
        sigs::MAGIC as usize,
        sigs::VERSION as usize,
        size,
        rules.len(),
        nr_patterns,
        segments.len(),
        strings.len(),
        0,
    ] {
        blob.extend(le32(v)?);
    }
    blob.extend(rule_table);
    blob.extend(pattern_table);
    blob.extend(segment_table);
    blob.extend(strings);
    // What validate refuses was refused above; this is a consistency check.
    sigs::validate(&blob).map_err(|e| format!("internal error: {}", e))?;
    Ok(blob)
}

/// Parse, encode and validate a rule file. Errors that only the whole set
/// has (too many rules, patterns, segments or bytes) point at the rule
/// that goes over the limit.
pub fn compile(src: &str) -> Result<Compiled, TextError> {
    let parsed = Parser::new(src).file()?;
    if parsed.is_empty() {
        return Err(TextError {
            line: 1,
            col: 1,
            msg: "no rules".into(),
        });
    }
    // Running totals, as encode lays the set out.
    let (mut patterns, mut segments, mut size) = (0usize, 0usize, sigs::HEADER_SIZE);
    for (i, rule) in parsed.iter().enumerate() {
        let over = |what: String| Err(src_error(src, rule.name_at, what));
        if i >= sigs::MAX_RULES {
            return over(format!("more than {} rules in the file", sigs::MAX_RULES));
        }
        patterns = patterns.saturating_add(rule.spec.patterns.len());
        if patterns > sigs::MAX_PATTERNS {
            return over(format!(
                "more than {} strings in the file",
                sigs::MAX_PATTERNS
            ));
        }
        size = size
            .saturating_add(sigs::RULE_SIZE)
            .saturating_add(rule.spec.name.len());
        for pattern in &rule.spec.patterns {
            let jumps = pattern
                .iter()
                .filter(|t| matches!(t, Token::Jump { .. }))
                .count();
            let segs = jumps.saturating_add(1);
            let bytes = pattern.len().saturating_sub(jumps);
            segments = segments.saturating_add(segs);
            size = size
                .saturating_add(sigs::PATTERN_SIZE)
                .saturating_add(segs.saturating_mul(sigs::SEGMENT_SIZE))
                .saturating_add(bytes.saturating_mul(2));
        }
        if segments > sigs::MAX_SEGMENTS {
            return over(format!(
                "more than {} segments (byte runs between jumps) in the file",
                sigs::MAX_SEGMENTS
            ));
        }
        if size > sigs::MAX_SIZE {
            return over(format!(
                "the compiled set would exceed {} bytes",
                sigs::MAX_SIZE
            ));
        }
    }
    let rules: Vec<RuleSpec> = parsed.into_iter().map(|r| r.spec).collect();
    let blob = encode(&rules).map_err(|msg| TextError {
        line: 1,
        col: 1,
        msg,
    })?;
    Ok(Compiled { blob, rules })
}

fn le32(v: usize) -> Result<[u8; 4], String> {
    u32::try_from(v)
        .map(u32::to_le_bytes)
        .map_err(|_| "the set is too large".to_string())
}

fn too_many_segments() -> String {
    format!("more than {} segments", sigs::MAX_SEGMENTS)
}

/// Whether `name` may name a rule (or, with its `$`, a string).
fn check_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    if b.is_empty() {
        return Err("empty name".into());
    }
    if b.len() > sigs::NAME_MAX {
        return Err(format!("name longer than {} bytes", sigs::NAME_MAX));
    }
    if b.first().is_some_and(u8::is_ascii_digit)
        || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        return Err(format!(
            "'{}' is not an identifier ([A-Za-z_][A-Za-z0-9_]*)",
            name
        ));
    }
    Ok(())
}

/// A pattern's segments: (value, mask) pairs and the jump after each. Also
/// checks what validate does per pattern.
fn split_pattern(tokens: &[Token]) -> Result<Vec<(Vec<u8>, u16, u16)>, String> {
    let mut segs: Vec<(Vec<u8>, u16, u16)> = Vec::new();
    let mut pairs = Vec::new();
    let mut span = 0usize;
    let mut anchored = false;
    for (i, t) in tokens.iter().enumerate() {
        match *t {
            Token::Byte { value, mask } => {
                if value & !mask != 0 {
                    return Err(format!(
                        "byte {:02x} has bits outside its mask {:02x}",
                        value, mask
                    ));
                }
                anchored |= mask == 0xff;
                pairs.extend([value, mask]);
                span = span.saturating_add(1);
            }
            Token::Jump { min, max } => {
                if i == 0 || i.saturating_add(1) == tokens.len() {
                    return Err("a jump cannot start or end a pattern".into());
                }
                if pairs.is_empty() {
                    return Err("two jumps in a row".into());
                }
                if min > max || usize::from(max) > sigs::MAX_JUMP {
                    return Err(format!(
                        "jump [{}-{}]: need min <= max <= {}",
                        min,
                        max,
                        sigs::MAX_JUMP
                    ));
                }
                span = span.saturating_add(usize::from(max));
                segs.push((core::mem::take(&mut pairs), min, max));
            }
        }
    }
    if pairs.is_empty() {
        return Err("empty pattern".into());
    }
    segs.push((pairs, 0, 0));
    if !anchored {
        return Err("no byte without wildcards: nothing to search for".into());
    }
    if segs.len() > sigs::MAX_CHAIN {
        return Err(format!(
            "{} jumps, more than {}",
            segs.len().saturating_sub(1),
            sigs::MAX_CHAIN - 1
        ));
    }
    if span > sigs::MAX_SPAN {
        return Err(format!(
            "matches up to {} bytes, more than {}",
            span,
            sigs::MAX_SPAN
        ));
    }
    Ok(segs)
}

/// Line and column of byte `at` of `src`.
fn src_error(src: &str, at: usize, msg: String) -> TextError {
    let before = src.get(..at).unwrap_or(src);
    let line = before.matches('\n').count().saturating_add(1);
    let line_start = before.rfind('\n').map_or(0, |i| i.saturating_add(1));
    let col = before
        .get(line_start..)
        .map_or(0, |s| s.chars().count())
        .saturating_add(1);
    TextError { line, col, msg }
}

/// A parsed rule and where its name is.
struct Parsed {
    spec: RuleSpec,
    name_at: usize,
}

/// A string of a rule being parsed.
struct StringDef {
    id: String,
    at: usize,
    tokens: Vec<Token>,
    used: bool,
}

struct Parser<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
}

type Res<T> = Result<T, TextError>;

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            b: src.as_bytes(),
            pos: 0,
        }
    }

    fn err<T>(&self, at: usize, msg: impl Into<String>) -> Res<T> {
        Err(src_error(self.src, at, msg.into()))
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.b.get(self.pos.saturating_add(k)).copied()
    }

    fn bump(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n);
    }

    /// The source from `from` to the current position (ASCII there).
    fn since(&self, from: usize) -> &'a str {
        self.src.get(from..self.pos).unwrap_or("")
    }

    /// Skip white space and comments.
    fn skip(&mut self) -> Res<()> {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(c), _) if c.is_ascii_whitespace() => self.bump(1),
                (Some(b'/'), Some(b'/')) => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.bump(1);
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    let start = self.pos;
                    match self
                        .src
                        .get(self.pos.saturating_add(2)..)
                        .and_then(|s| s.find("*/"))
                    {
                        Some(i) => self.bump(i.saturating_add(4)),
                        None => return self.err(start, "unterminated comment"),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// What is at the current position, for messages.
    fn describe(&self) -> String {
        match self.src.get(self.pos..).and_then(|s| s.chars().next()) {
            None => "end of file".into(),
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                let word: String = self
                    .src
                    .get(self.pos..)
                    .unwrap_or("")
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                format!("'{}'", word)
            }
            Some(c) => format!("'{}'", c),
        }
    }

    /// An identifier (after white space), or `None` if there is none here.
    fn ident(&mut self) -> Res<Option<(&'a str, usize)>> {
        self.skip()?;
        let start = self.pos;
        if !self
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        {
            return Ok(None);
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.bump(1);
        }
        Ok(Some((self.since(start), start)))
    }

    fn expect_ident(&mut self, what: &str) -> Res<(&'a str, usize)> {
        match self.ident()? {
            Some(id) => Ok(id),
            None => self.err(
                self.pos,
                format!("expected {}, found {}", what, self.describe()),
            ),
        }
    }

    fn expect_word(&mut self, word: &str) -> Res<usize> {
        self.skip()?;
        let at = self.pos;
        match self.ident()? {
            Some((w, at)) if w == word => Ok(at),
            _ => {
                self.pos = at;
                self.err(
                    at,
                    format!("expected '{}', found {}", word, self.describe()),
                )
            }
        }
    }

    fn expect_char(&mut self, c: u8) -> Res<usize> {
        self.skip()?;
        if self.peek() == Some(c) {
            self.bump(1);
            Ok(self.pos.saturating_sub(1))
        } else {
            self.err(
                self.pos,
                format!("expected '{}', found {}", c as char, self.describe()),
            )
        }
    }

    /// Whether the next thing is `word` (not consumed).
    fn at_word(&mut self, word: &str) -> Res<bool> {
        let save = self.pos;
        let found = matches!(self.ident()?, Some((w, _)) if w == word);
        self.pos = save;
        Ok(found)
    }

    fn file(&mut self) -> Res<Vec<Parsed>> {
        let mut rules: Vec<Parsed> = Vec::new();
        loop {
            self.skip()?;
            if self.peek().is_none() {
                return Ok(rules);
            }
            let Some((word, at)) = self.ident()? else {
                return self.err(
                    self.pos,
                    format!("expected 'rule', found {}", self.describe()),
                );
            };
            match word {
                "rule" => {}
                "import" | "include" => {
                    return self.err(at, format!("'{}' is not supported", word));
                }
                "private" | "global" => {
                    return self.err(at, format!("'{}' rules are not supported", word));
                }
                _ => return self.err(at, format!("expected 'rule', found '{}'", word)),
            }
            let rule = self.rule()?;
            if rules.iter().any(|r| r.spec.name == rule.spec.name) {
                return self.err(
                    rule.name_at,
                    format!("duplicate rule name '{}'", rule.spec.name),
                );
            }
            rules.push(rule);
        }
    }

    /// A rule, after `rule`.
    fn rule(&mut self) -> Res<Parsed> {
        let (name, name_at) = self.expect_ident("a rule name")?;
        if KEYWORDS.contains(&name) {
            return self.err(name_at, format!("'{}' is a reserved word", name));
        }
        check_name(name).or_else(|e| self.err(name_at, e))?;
        self.skip()?;
        if self.peek() == Some(b':') {
            self.bump(1);
            self.expect_ident("a tag")?;
            loop {
                self.skip()?;
                if self.peek() == Some(b'{') {
                    break;
                }
                self.expect_ident("a tag or '{'")?;
            }
        }
        self.expect_char(b'{')?;
        if self.at_word("meta")? {
            self.expect_word("meta")?;
            self.expect_char(b':')?;
            self.meta()?;
        }
        let mut strings = Vec::new();
        if self.at_word("strings")? {
            self.expect_word("strings")?;
            self.expect_char(b':')?;
            strings = self.strings()?;
        }
        self.skip()?;
        let cond_at = self.pos;
        if self.peek() == Some(b'}') {
            return self.err(cond_at, "a rule needs a condition");
        }
        self.expect_word("condition")?;
        self.expect_char(b':')?;
        self.condition(&mut strings)?;
        if strings.is_empty() {
            return self.err(name_at, format!("rule '{}' has no strings", name));
        }
        if strings.len() > sigs::MAX_RULE_PATTERNS {
            return self.err(
                name_at,
                format!(
                    "rule '{}' has {} strings, more than {}",
                    name,
                    strings.len(),
                    sigs::MAX_RULE_PATTERNS
                ),
            );
        }
        if let Some(s) = strings.iter().find(|s| !s.used) {
            return self.err(
                s.at,
                format!("string {} is not used in the condition", s.id),
            );
        }
        Ok(Parsed {
            spec: RuleSpec {
                name: name.into(),
                patterns: strings.into_iter().map(|s| s.tokens).collect(),
            },
            name_at,
        })
    }

    /// `key = value` lines, up to `strings:` or `condition:`.
    fn meta(&mut self) -> Res<()> {
        loop {
            if self.at_word("strings")? || self.at_word("condition")? {
                return Ok(());
            }
            self.skip()?;
            if self.peek() == Some(b'}') {
                return Ok(());
            }
            self.expect_ident("a meta key")?;
            self.expect_char(b'=')?;
            self.skip()?;
            let at = self.pos;
            match self.peek() {
                Some(b'"') => {
                    self.text()?;
                }
                Some(b'-') | Some(b'0'..=b'9') => {
                    self.bump(1);
                    while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
                        self.bump(1);
                    }
                    let number = self.since(at);
                    let digits = number.trim_start_matches('-');
                    let valid = match digits.strip_prefix("0x") {
                        Some(hex) => !hex.is_empty() && hex.bytes().all(|c| c.is_ascii_hexdigit()),
                        None => !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()),
                    };
                    if !valid {
                        return self.err(at, format!("bad number '{}'", number));
                    }
                }
                _ => match self.ident()? {
                    Some(("true" | "false", _)) => {}
                    _ => {
                        self.pos = at;
                        return self.err(
                            at,
                            format!(
                                "expected a string, number, true or false, found {}",
                                self.describe()
                            ),
                        );
                    }
                },
            }
        }
    }

    /// `$id = value` lines, up to `condition:`.
    fn strings(&mut self) -> Res<Vec<StringDef>> {
        let mut defs: Vec<StringDef> = Vec::new();
        loop {
            self.skip()?;
            if self.peek() != Some(b'$') {
                if defs.is_empty() {
                    return self.err(
                        self.pos,
                        format!("expected a string ($name = ...), found {}", self.describe()),
                    );
                }
                return Ok(defs);
            }
            let (id, at) = self.string_id()?;
            if id.len() > 1 && defs.iter().any(|d| d.id == id) {
                return self.err(at, format!("duplicate string {}", id));
            }
            self.expect_char(b'=')?;
            self.skip()?;
            let value_at = self.pos;
            let tokens = match self.peek() {
                Some(b'"') => self
                    .text()?
                    .into_iter()
                    .map(|value| Token::Byte { value, mask: 0xff })
                    .collect(),
                Some(b'{') => self.hex()?,
                Some(b'/') => return self.err(value_at, "regular expressions are not supported"),
                _ => {
                    return self.err(
                        value_at,
                        format!(
                            "expected a \"text\" or {{ hex }} string, found {}",
                            self.describe()
                        ),
                    )
                }
            };
            split_pattern(&tokens).or_else(|e| self.err(at, format!("string {}: {}", id, e)))?;
            // Modifiers come next, if any: none is supported.
            let save = self.pos;
            if let Some((word, word_at)) = self.ident()? {
                if MODIFIERS.contains(&word) {
                    return self.err(
                        word_at,
                        format!("string modifier '{}' is not supported", word),
                    );
                }
                if word != "condition" {
                    return self.err(word_at, format!("unexpected '{}'", word));
                }
            }
            self.pos = save;
            defs.push(StringDef {
                id,
                at,
                tokens,
                used: false,
            });
        }
    }

    /// `$` and an identifier, or a lone `$` (an anonymous string).
    fn string_id(&mut self) -> Res<(String, usize)> {
        self.skip()?;
        let at = self.pos;
        if self.peek() != Some(b'$') {
            return self.err(
                at,
                format!("expected a string ($name), found {}", self.describe()),
            );
        }
        self.bump(1);
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.bump(1);
        }
        let id = self.since(at);
        if id.len() > sigs::NAME_MAX.saturating_add(1) {
            return self.err(
                at,
                format!("string name longer than {} bytes", sigs::NAME_MAX),
            );
        }
        Ok((id.into(), at))
    }

    /// A "text" string's bytes.
    fn text(&mut self) -> Res<Vec<u8>> {
        let start = self.pos;
        self.bump(1);
        let mut out = Vec::new();
        loop {
            let at = self.pos;
            match self.peek() {
                None | Some(b'\n') => return self.err(start, "unterminated string"),
                Some(b'"') => {
                    self.bump(1);
                    return Ok(out);
                }
                Some(b'\\') => {
                    let c = self.peek_at(1);
                    self.bump(2);
                    out.push(match c {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'n') => b'\n',
                        Some(b't') => b'\t',
                        Some(b'r') => b'\r',
                        Some(b'x') => {
                            let hex = self.src.get(self.pos..self.pos.saturating_add(2));
                            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                                Some(v)
                                    if hex.is_some_and(|h| {
                                        h.bytes().all(|c| c.is_ascii_hexdigit())
                                    }) =>
                                {
                                    self.bump(2);
                                    v
                                }
                                _ => return self.err(at, "\\x needs two hex digits"),
                            }
                        }
                        _ => {
                            return self
                                .err(at, "unknown escape (known: \\\" \\\\ \\n \\t \\r \\xNN)")
                        }
                    });
                }
                Some(c) => {
                    out.push(c);
                    self.bump(1);
                }
            }
        }
    }

    /// A { hex } string's tokens.
    fn hex(&mut self) -> Res<Vec<Token>> {
        let open = self.pos;
        self.bump(1);
        let mut tokens = Vec::new();
        loop {
            self.skip()?;
            let at = self.pos;
            let nibble = |c: Option<u8>| match c {
                Some(b'?') => Some((0, 0)),
                Some(c) => (c as char).to_digit(16).map(|d| (d as u8, 0xf)),
                None => None,
            };
            match self.peek() {
                None => return self.err(open, "unterminated hex string"),
                Some(b'}') => {
                    self.bump(1);
                    break;
                }
                Some(b'[') => {
                    self.bump(1);
                    let (min, max) = self.jump(at)?;
                    tokens.push(Token::Jump { min, max });
                }
                Some(b'(') | Some(b'|') => {
                    return self.err(at, "alternatives ( .. | .. ) are not supported")
                }
                Some(b'~') => return self.err(at, "'~' (not) is not supported"),
                c => match (nibble(c), nibble(self.peek_at(1))) {
                    (Some((hv, hm)), Some((lv, lm))) => {
                        self.bump(2);
                        if self
                            .peek()
                            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'?')
                        {
                            return self.err(at, "hex bytes are two digits, separated by spaces");
                        }
                        tokens.push(Token::Byte {
                            value: (hv << 4) | lv,
                            mask: (hm << 4) | lm,
                        });
                    }
                    (Some(_), _) => return self.err(at, "incomplete hex byte: two digits needed"),
                    _ => {
                        return self.err(
                            at,
                            format!("unexpected {} in a hex string", self.describe()),
                        )
                    }
                },
            }
        }
        if tokens.is_empty() {
            return self.err(open, "empty hex string");
        }
        Ok(tokens)
    }

    /// A jump's bounds, after `[` (at `at`).
    fn jump(&mut self, at: usize) -> Res<(u16, u16)> {
        self.skip()?;
        let min = self.number()?;
        self.skip()?;
        let (min, max) = if self.peek() == Some(b'-') {
            self.bump(1);
            self.skip()?;
            match (min, self.number()?) {
                (Some(min), Some(max)) => (min, max),
                _ => return self.err(at, "unbounded jumps are not supported: give [n-m]"),
            }
        } else {
            match min {
                Some(n) => (n, n),
                None => {
                    return self.err(
                        self.pos,
                        format!("expected a number, found {}", self.describe()),
                    )
                }
            }
        };
        self.skip()?;
        if self.peek() != Some(b']') {
            return self.err(self.pos, format!("expected ']', found {}", self.describe()));
        }
        self.bump(1);
        if min > max {
            return self.err(
                at,
                format!("jump [{}-{}]: the minimum is above the maximum", min, max),
            );
        }
        if max > sigs::MAX_JUMP {
            return self.err(
                at,
                format!(
                    "jump [{}-{}]: longer than {} bytes",
                    min,
                    max,
                    sigs::MAX_JUMP
                ),
            );
        }
        Ok((min as u16, max as u16))
    }

    /// A decimal number, if there is one here.
    fn number(&mut self) -> Res<Option<usize>> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump(1);
        }
        if start == self.pos {
            return Ok(None);
        }
        match self.since(start).parse::<usize>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => self.err(start, "number too large"),
        }
    }

    /// The condition, up to the rule's `}`: marks the strings it names.
    fn condition(&mut self, strings: &mut [StringDef]) -> Res<()> {
        const ONLY: &str =
            "unsupported condition: only 'any of them' semantics are supported (write 'any of them', '$a', or '$a or $b ...')";
        self.skip()?;
        let at = self.pos;
        if self.at_word("any")? {
            self.expect_word("any")?;
            self.skip()?;
            let of_at = self.pos;
            if !self.at_word("of")? {
                return self.err(of_at, ONLY);
            }
            self.expect_word("of")?;
            self.skip()?;
            let them_at = self.pos;
            if !self.at_word("them")? {
                return self.err(them_at, ONLY);
            }
            self.expect_word("them")?;
            for s in strings.iter_mut() {
                s.used = true;
            }
        } else if self.peek() == Some(b'$') {
            loop {
                let (id, id_at) = self.string_id()?;
                if id.len() == 1 {
                    return self.err(
                        id_at,
                        "anonymous strings can only be used with 'any of them'",
                    );
                }
                match strings.iter_mut().find(|s| s.id == id) {
                    Some(s) => s.used = true,
                    None => return self.err(id_at, format!("undefined string {}", id)),
                }
                self.skip()?;
                if !self.at_word("or")? {
                    break;
                }
                self.expect_word("or")?;
                self.skip()?;
                if self.peek() != Some(b'$') {
                    return self.err(self.pos, ONLY);
                }
            }
        } else {
            return self.err(at, ONLY);
        }
        self.skip()?;
        if self.peek() != Some(b'}') {
            return self.err(self.pos, ONLY);
        }
        self.bump(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigs::{validate, Match, Matcher};
    use alloc::vec;
    use std::string::ToString;

    const DEMO: &str = r#"
// line and /* block */ comments
rule demo_marker : optional tags {
    meta:                       // optional, ignored
        author = "x"
        version = 2
        score = -0x10
        draft = false
    strings:
        $a = { 4D 5A ?? ?? [2-4] 50 45 }   /* a PE-ish header */
        $b = "KVM-PFI-DEMO"
    condition:
        any of them
}
"#;

    fn byte(value: u8) -> Token {
        Token::Byte { value, mask: 0xff }
    }

    /// Compile `src` and scan `hay`: (rule name, start, len) of each match.
    fn find(src: &str, hay: &[u8]) -> Vec<(String, usize, usize)> {
        let compiled = compile(src).unwrap_or_else(|e| panic!("{e}"));
        let info = validate(&compiled.blob).unwrap();
        let mut storage = vec![0u32; info.storage_words];
        sigs::build(&compiled.blob, &mut storage).unwrap();
        let m = Matcher::new(&compiled.blob, &storage).unwrap();
        let mut out = Vec::new();
        m.scan(hay, &mut |x: Match| {
            let name = core::str::from_utf8(m.rule_name(x.rule)).unwrap();
            assert_eq!(name, compiled.rules[x.rule as usize].name);
            out.push((name.to_string(), x.start, x.len));
            true
        });
        out.sort();
        out
    }

    fn one(name: &str, start: usize, len: usize) -> Vec<(String, usize, usize)> {
        vec![(name.to_string(), start, len)]
    }

    fn error(src: &str) -> String {
        compile(src).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_demo() {
        let rules = parse(DEMO).unwrap();
        let wild = Token::Byte { value: 0, mask: 0 };
        assert_eq!(
            rules,
            [RuleSpec {
                name: "demo_marker".into(),
                patterns: vec![
                    vec![
                        byte(0x4d),
                        byte(0x5a),
                        wild,
                        wild,
                        Token::Jump { min: 2, max: 4 },
                        byte(0x50),
                        byte(0x45),
                    ],
                    b"KVM-PFI-DEMO".iter().map(|&b| byte(b)).collect(),
                ],
            }]
        );
        let compiled = compile(DEMO).unwrap();
        assert_eq!(compiled.rules, rules);
        let info = validate(&compiled.blob).unwrap();
        assert_eq!(
            (info.nr_rules, info.nr_patterns, info.nr_segments),
            (1, 2, 3)
        );
        assert_eq!(
            find(DEMO, b"xxMZ\x90\x00..PEyy KVM-PFI-DEMO"),
            [
                ("demo_marker".to_string(), 2, 8),
                ("demo_marker".to_string(), 13, 12)
            ]
        );
    }

    #[test]
    fn offsets_start_middle_end() {
        let src = r#"rule m { strings: $ = "needle" condition: any of them }"#;
        assert_eq!(find(src, b"needle in the hay"), one("m", 0, 6));
        assert_eq!(find(src, b"the needle in hay"), one("m", 4, 6));
        assert_eq!(find(src, b"hay has a needle"), one("m", 10, 6));
        assert_eq!(find(src, b"hay has a needl"), []);
        assert_eq!(find(src, b""), []);
    }

    #[test]
    fn text_escapes() {
        let src = r#"rule e { strings: $a = "q\"b\\s\n\t\r\x00\xfF" condition: $a }"#;
        assert_eq!(find(src, b"..q\"b\\s\n\t\r\x00\xff"), one("e", 2, 10));
        let utf8 = r#"rule u { strings: $a = "é" condition: $a }"#;
        assert_eq!(find(utf8, "café".as_bytes()), one("u", 3, 2));
    }

    #[test]
    fn nibble_wildcards() {
        let src = "rule n { strings: $a = { 4? ?1 ?? 42 } condition: $a }";
        assert_eq!(find(src, b"\x40\x01\xffB"), one("n", 0, 4));
        assert_eq!(find(src, b"\x4f\xf1\x00B"), one("n", 0, 4));
        assert_eq!(find(src, b"\x50\x01\xffB"), []);
        assert_eq!(find(src, b"\x40\x02\xffB"), []);
    }

    #[test]
    fn jumps_at_their_bounds() {
        let src = "rule j { strings: $a = { 41 41 [3-5] 42 42 } condition: $a }";
        for gap in 0..8 {
            let hay = [b"AA".as_slice(), &vec![b'.'; gap], b"BB"].concat();
            let want = if (3..=5).contains(&gap) {
                one("j", 0, 4 + gap)
            } else {
                vec![]
            };
            assert_eq!(find(src, &hay), want, "gap {gap}");
        }
        // An exact jump, and the longest one.
        let src = "rule k { strings: $a = { 41 [256] 42 } condition: $a }";
        let hay = |gap: usize| [b"A".as_slice(), &vec![0; gap], b"B"].concat();
        assert_eq!(find(src, &hay(256)), one("k", 0, 258));
        assert_eq!(find(src, &hay(255)), []);
        assert_eq!(find(src, &hay(257)), []);
    }

    #[test]
    fn straddles_a_page_boundary() {
        let src = "rule s { strings: $a = { 4B 56 4D [0-16] 2D 50 46 49 } condition: $a }";
        let mut first = vec![0u8; 4096];
        let mut second = vec![0u8; 4096];
        first[4094..].copy_from_slice(b"KV");
        second[..8].copy_from_slice(b"M....-PF");
        second[8] = b'I';
        assert_eq!(find(src, &first), []);
        assert_eq!(find(src, &second), []);
        assert_eq!(find(src, &[first, second].concat()), one("s", 4094, 11));
    }

    #[test]
    fn clean_haystack() {
        let hay: Vec<u8> = (0..8192u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        assert_eq!(find(DEMO, &hay), []);
    }

    #[test]
    fn many_rules() {
        let mut src = String::new();
        for i in 0..300 {
            src += &format!(
                "rule r{i} {{ strings: $t = \"marker-{i:03}!\" $h = {{ F0 0D [1-2] {:02X} {:02X} }} condition: $t or $h }}\n",
                i % 256,
                i / 256
            );
        }
        let mut hay = b"xx marker-007! yy marker-299!".to_vec();
        hay.extend([0xf0, 0x0d, 0xee, 42, 0]);
        hay.extend([0xf0, 0x0d, 0xee, 0xee, (290 % 256) as u8, 1]);
        let names = |v: &[(&str, usize, usize)]| -> Vec<(String, usize, usize)> {
            v.iter().map(|&(n, s, l)| (n.to_string(), s, l)).collect()
        };
        assert_eq!(
            find(&src, &hay),
            names(&[
                ("r290", 34, 6),
                ("r299", 18, 11),
                ("r42", 29, 5),
                ("r7", 3, 11)
            ])
        );
        assert_eq!(parse(&src).unwrap().len(), 300);
    }

    #[test]
    fn errors_point_at_their_place() {
        let cases: &[(&str, &str)] = &[
            ("import \"pe\"\n", "1:1: 'import' is not supported"),
            ("\n  private rule x { strings: $a = \"a\" condition: $a }", "2:3: 'private' rules are not supported"),
            (
                "rule x {\n  strings:\n    $a = \"a\\qb\"\n  condition: $a }",
                "3:12: unknown escape (known: \\\" \\\\ \\n \\t \\r \\xNN)",
            ),
            (
                "rule x {\n strings:\n  $a = { 41 ( 42 | 43 ) }\n condition: $a }",
                "3:13: alternatives ( .. | .. ) are not supported",
            ),
            (
                "rule x { strings: $a = { 41 [2-] 42 } condition: $a }",
                "1:29: unbounded jumps are not supported: give [n-m]",
            ),
            (
                "rule x { strings: $a = { 41 [0-300] 42 } condition: $a }",
                "1:29: jump [0-300]: longer than 256 bytes",
            ),
            (
                "rule x { strings: $a = \"abc\" nocase condition: $a }",
                "1:30: string modifier 'nocase' is not supported",
            ),
            (
                "rule x {\n strings: $a = \"a\" $b = \"b\"\n condition:\n  $a and $b\n}",
                "4:6: unsupported condition: only 'any of them' semantics are supported (write 'any of them', '$a', or '$a or $b ...')",
            ),
            (
                "rule x { strings: $a = \"a\" condition: all of them }",
                "1:39: unsupported condition: only 'any of them' semantics are supported (write 'any of them', '$a', or '$a or $b ...')",
            ),
            (
                "rule x { strings: $a = \"a\" condition: $a }\nrule x { strings: $a = \"b\" condition: $a }",
                "2:6: duplicate rule name 'x'",
            ),
            (
                "rule x { strings: $a = \"a\" $a = \"b\" condition: $a }",
                "1:28: duplicate string $a",
            ),
            ("rule x { strings: $a = \"a\" condition: $b }", "1:39: undefined string $b"),
            (
                "rule x { strings: $a = \"a\" $b = \"b\" condition: $a }",
                "1:28: string $b is not used in the condition",
            ),
            (
                "rule x { strings: $a = { ?? 4? } condition: $a }",
                "1:19: string $a: no byte without wildcards: nothing to search for",
            ),
            ("rule any { strings: $a = \"a\" condition: $a }", "1:6: 'any' is a reserved word"),
            ("rule x { /* oops\n", "1:10: unterminated comment"),
            ("rule x { strings: $a = \"ab\n\" condition: $a }", "1:24: unterminated string"),
            (
                "rule x { strings: $a = /ab+c/ condition: $a }",
                "1:24: regular expressions are not supported",
            ),
            ("rule x { strings: $a = \"a\" }", "1:28: a rule needs a condition"),
            ("rule x { condition: any of them }", "1:6: rule 'x' has no strings"),
            // Columns count characters, not bytes.
            (
                "rule é { strings: $a = \"a\" condition: $a }",
                "1:6: expected a rule name, found 'é'",
            ),
            (
                "rule x { meta: d = \"é\" strings: $a = { 4 } condition: $a }",
                "1:40: incomplete hex byte: two digits needed",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(&error(src), want, "{src}");
        }
        let long = "n".repeat(64);
        assert_eq!(
            error(&format!(
                "rule {long} {{ strings: $a = \"a\" condition: $a }}"
            )),
            "1:6: name longer than 63 bytes"
        );
    }

    #[test]
    fn limits_point_at_the_rule() {
        let strings: String = (0..17).map(|i| format!("$s{i} = \"s{i}\" ")).collect();
        let src = format!("rule a {{ strings: $a = \"a\" condition: $a }}\nrule big {{ strings: {strings} condition: any of them }}");
        assert_eq!(error(&src), "2:6: rule 'big' has 17 strings, more than 16");
        let mut src = String::new();
        for i in 0..1025 {
            src += &format!("rule r{i} {{ strings: $a = \"x\" condition: $a }}\n");
        }
        assert_eq!(error(&src), "1025:6: more than 1024 rules in the file");
        let mut src = String::new();
        for i in 0..65 {
            let s: String = (0..16).map(|k| format!("$s{k} = \"{i}-{k}\" ")).collect();
            src += &format!("rule r{i} {{ strings: {s} condition: any of them }}\n");
        }
        assert_eq!(error(&src), "65:6: more than 1024 strings in the file");
        let long = vec!["41"; 33].join(" [0] ");
        let src = format!("rule c {{\n strings:\n  $a = {{ {long} }}\n condition: $a }}");
        assert_eq!(error(&src), "3:3: string $a: 32 jumps, more than 31");
        let src =
            "rule w { strings: $a = { 41 [256] 42 [256] 43 [256] 44 [256] 45 } condition: $a }";
        assert_eq!(
            error(src),
            "1:19: string $a: matches up to 1029 bytes, more than 1024"
        );
        // The set's size: a rule of 16 strings of 1024 bytes takes
        // 16 * (4 + 12 + 2048) + 8 + its name: the 32nd goes over 1 MiB.
        let mut src = String::new();
        let text = "x".repeat(1022);
        for i in 0..40 {
            let s: String = (0..16)
                .map(|k| format!("$s{k} = \"{k:02}{text}\" "))
                .collect();
            src += &format!("rule r{i:02} {{ strings: {s} condition: any of them }}\n");
        }
        assert_eq!(
            error(&src),
            "32:6: the compiled set would exceed 1048576 bytes"
        );
    }

    #[test]
    fn encode_refuses_what_validate_would() {
        let rule = |patterns: Vec<Vec<Token>>| RuleSpec {
            name: "r".into(),
            patterns,
        };
        let jump = Token::Jump { min: 1, max: 2 };
        let cases = [
            (vec![], "no rules"),
            (vec![rule(vec![])], "rule 'r': 0 patterns, not 1 to 16"),
            (
                vec![rule(vec![vec![Token::Byte {
                    value: 0x41,
                    mask: 0xf0,
                }]])],
                "rule 'r', pattern 1: byte 41 has bits outside its mask f0",
            ),
            (
                vec![rule(vec![vec![jump, byte(1)]])],
                "rule 'r', pattern 1: a jump cannot start or end a pattern",
            ),
            (
                vec![rule(vec![
                    vec![byte(1)],
                    vec![byte(1), jump, jump, byte(2)],
                ])],
                "rule 'r', pattern 2: two jumps in a row",
            ),
            (
                vec![RuleSpec {
                    name: "9lives".into(),
                    patterns: vec![vec![byte(1)]],
                }],
                "rule '9lives': '9lives' is not an identifier ([A-Za-z_][A-Za-z0-9_]*)",
            ),
        ];
        for (rules, want) in cases {
            assert_eq!(encode(&rules), Err(want.to_string()));
        }
        let ok = encode(&[rule(vec![vec![byte(1), jump, byte(2)]])]).unwrap();
        assert!(validate(&ok).is_ok());
    }
}
