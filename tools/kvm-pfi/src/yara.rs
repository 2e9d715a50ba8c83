// SPDX-License-Identifier: GPL-2.0
//! YARA rules over saved pages (`snapshot --yara`), with yara-x.
//!
//! A buffer is one page or a run of consecutive pages of one target laid end
//! to end; each match is reported once, as one JSON line, located by the page
//! its first byte is in.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::abi;
use crate::error::{Error, Result};
use crate::sigs;

/// Bytes of a delivered page (page-resident's `data`).
pub const PAGE: usize = abi::KVM_PFI_EVENT_DATA_LEN as usize;

/// Compiles a YARA rule file. A rule that does not compile is bad data:
/// `RULES:LINE:COL: message`, like `sigs compile`.
pub fn compile_file(path: &Path) -> Result<yara_x::Rules> {
    let src = sigs::read_input(path)?;
    let name = sigs::path_name(path);
    compile_source(&name, &src)
}

pub fn compile_source(name: &str, src: &[u8]) -> Result<yara_x::Rules> {
    let mut compiler = yara_x::Compiler::new();
    let code = yara_x::SourceCode::from(src).with_origin(name);
    if let Err(e) = compiler.add_source(code) {
        return Err(Error::Data(compile_error_text(name, &e)));
    }
    Ok(compiler.build())
}

/// One line for a yara-x report: where (its first label), the title, and
/// the label's own text when it adds something.
fn compile_error_text(name: &str, err: &yara_x::errors::CompileError) -> String {
    let report = serde_json::to_value(err).unwrap_or_default();
    let title = report["title"].as_str().unwrap_or("error").to_string();
    let label = report["labels"]
        .get(0)
        .and_then(|l| l["text"].as_str())
        .filter(|t| !t.is_empty() && *t != title);
    let what = match label {
        Some(l) => format!("{title}: {l}"),
        None => title,
    };
    match (report["line"].as_u64(), report["column"].as_u64()) {
        (Some(line), Some(col)) => format!("{name}:{line}:{col}: {what}"),
        _ => format!("{name}: {what}"),
    }
}

/// A page whose bytes are (part of) a scanned buffer.
#[derive(Debug, Clone)]
pub struct PageRef {
    pub vm_id: u32,
    pub target_id: u32,
    pub gva: u64,
    /// Its file, as printed in matches.
    pub file: String,
}

/// One line of `snapshot --yara` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchJson {
    pub rule: String,
    /// The pattern ("$a"); null for a rule that matched without strings.
    pub pattern: Option<String>,
    pub vm_id: u32,
    pub target_id: u32,
    /// Guest virtual address of the first matched byte.
    pub gva: u64,
    /// Offset of that byte in its page.
    pub offset: u64,
    pub length: u64,
    /// The file of the page the match starts in.
    pub file: String,
}

/// Scans buffers with compiled rules; remembers what it reported.
pub struct Scan<'r> {
    scanner: yara_x::Scanner<'r>,
    reported: HashSet<(String, Option<String>, u32, u32, u64, u64)>,
    /// Matches reported so far.
    pub matches: u64,
}

impl<'r> Scan<'r> {
    pub fn new(rules: &'r yara_x::Rules) -> Self {
        Scan {
            scanner: yara_x::Scanner::new(rules),
            reported: HashSet::new(),
            matches: 0,
        }
    }

    /// Scans `data`, the bytes of `pages` (consecutive, PAGE bytes each but
    /// maybe the last) laid end to end, and prints the matches not reported
    /// before (a match inside one page is found by both that page's scan and
    /// its run's).
    pub fn scan(&mut self, pages: &[PageRef], data: &[u8], out: &mut dyn Write) -> Result<()> {
        let Some(first) = pages.first() else {
            return Ok(());
        };
        let results = self
            .scanner
            .scan(data)
            .map_err(|e| Error::Msg(format!("yara scan of {}: {e}", first.file)))?;
        // (rule, pattern, start, length)
        let mut found: Vec<(String, Option<String>, usize, usize)> = Vec::new();
        for rule in results.matching_rules() {
            let before = found.len();
            for pattern in rule.patterns() {
                for m in pattern.matches() {
                    let r = m.range();
                    found.push((
                        rule.identifier().to_string(),
                        Some(pattern.identifier().to_string()),
                        r.start,
                        r.len(),
                    ));
                }
            }
            if found.len() == before {
                found.push((rule.identifier().to_string(), None, 0, 0));
            }
        }
        for (rule, pattern, start, length) in found {
            let k = (start / PAGE).min(pages.len() - 1);
            let page = &pages[k];
            let m = MatchJson {
                rule,
                pattern,
                vm_id: page.vm_id,
                target_id: page.target_id,
                gva: first.gva.wrapping_add(start as u64),
                offset: (start - k * PAGE) as u64,
                length: length as u64,
                file: page.file.clone(),
            };
            let key = (
                m.rule.clone(),
                m.pattern.clone(),
                m.vm_id,
                m.target_id,
                m.gva,
                m.length,
            );
            if !self.reported.insert(key) {
                continue;
            }
            self.matches += 1;
            let line = serde_json::to_string(&m).expect("plain structs serialize");
            writeln!(out, "{line}")
                .and_then(|_| out.flush())
                .map_err(|e| Error::from_io("write stdout", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit;

    fn page(gva: u64, file: &str) -> PageRef {
        PageRef {
            vm_id: 1,
            target_id: 2,
            gva,
            file: file.into(),
        }
    }

    fn lines(out: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn rule_errors_are_located() {
        let src = b"rule ok { condition: true }\n\nrule bad {\n  strings:\n    $a = \"x\"\n  condition:\n    $b\n}\n";
        let err = compile_source("r.yar", src).err().unwrap();
        assert_eq!(err.exit_code(), exit::DATAERR);
        let text = err.to_string();
        assert!(text.starts_with("r.yar:7:5: "), "{text}");
        assert!(text.contains("$b"), "{text}");
        let err = compile_source("s.yar", b"rule {").err().unwrap();
        assert!(err.to_string().starts_with("s.yar:1:6: "), "{err}");
    }

    #[test]
    fn matches_are_located_in_their_page_and_reported_once() {
        let rules = compile_source(
            "r.yar",
            br#"rule marker { strings: $a = "MARK" condition: $a }
                rule always { condition: filesize > 0 }"#,
        )
        .unwrap();
        let mut scan = Scan::new(&rules);
        let mut data = vec![0u8; 2 * PAGE];
        data[PAGE - 2..PAGE + 2].copy_from_slice(b"MARK");
        data[PAGE + 100..PAGE + 104].copy_from_slice(b"MARK");
        let pages = [page(0x10000, "p0"), page(0x11000, "p1")];
        let mut out = Vec::new();
        scan.scan(&pages, &data, &mut out).unwrap();
        let l = lines(&out);
        assert_eq!(l.len(), 3, "{l:?}");
        assert_eq!(
            l[0],
            serde_json::json!({"rule":"marker","pattern":"$a","vm_id":1,"target_id":2,
                "gva":0x10ffe,"offset":4094,"length":4,"file":"p0"})
        );
        assert_eq!(l[1]["gva"], 0x11064);
        assert_eq!(l[1]["offset"], 100);
        assert_eq!(l[1]["file"], "p1");
        assert_eq!(
            l[2],
            serde_json::json!({"rule":"always","pattern":null,"vm_id":1,"target_id":2,
                "gva":0x10000,"offset":0,"length":0,"file":"p0"})
        );
        assert_eq!(scan.matches, 3);

        // The second page alone: its match was reported already.
        let mut out = Vec::new();
        scan.scan(&pages[1..], &data[PAGE..], &mut out).unwrap();
        let l = lines(&out);
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(
            (l[0]["rule"].as_str(), l[0]["gva"].as_u64()),
            (Some("always"), Some(0x11000))
        );
        assert_eq!(scan.matches, 4);
    }
}
