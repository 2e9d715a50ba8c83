// SPDX-License-Identifier: GPL-2.0
//! `kvm-pfi snapshot`: save the pages that page-resident events deliver
//! (targets added with --read) into a directory, with an index, and scan
//! them with YARA rules, live or later (`--from`).
//!
//! Layout of DIR: one file per delivered page, named
//! `vm<VM>-t<TARGET>-<GVA, 16 hex digits>.page` (`-2`, `-3`, ... before
//! `.page` for a page delivered again), and `index.jsonl`, one line per
//! page in delivery order:
//! `{"vm_id":..,"target_id":..,"cr3":..,"gva":..,"gpa":..,"how":"injected","file":"vm1-t2-....page"}`.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::abi;
use crate::error::{Error, Result};
use crate::events::{self, Value};
use crate::watch::{self, FollowOpts, Io, Sink, Transport};
use crate::yara::{self, PageRef, Scan, PAGE};

pub const INDEX: &str = "index.jsonl";

/// The `how` of a page-resident event: its YAML name, or a number the tool
/// does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum How {
    Name(String),
    Number(u64),
}

/// One line of index.jsonl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub vm_id: u32,
    pub target_id: u32,
    pub cr3: u64,
    pub gva: u64,
    pub gpa: u64,
    /// null if the event had no `how`.
    pub how: Option<How>,
    /// The page's file, relative to the snapshot directory.
    pub file: String,
}

impl IndexEntry {
    fn page_ref(&self, dir: &Path) -> PageRef {
        PageRef {
            vm_id: self.vm_id,
            target_id: self.target_id,
            gva: self.gva,
            file: dir.join(&self.file).display().to_string(),
        }
    }
}

fn how_of(v: Option<Value>) -> Option<How> {
    match v? {
        Value::Str(s) => Some(How::Name(s)),
        Value::Uint(n) => Some(How::Number(n)),
        Value::Bool(_) | Value::Hex(_) => None,
    }
}

/// Reads DIR/index.jsonl. A missing index is a missing input (66), a line
/// that is not an entry bad data (65).
pub fn read_index(dir: &Path) -> Result<Vec<IndexEntry>> {
    let path = dir.join(INDEX);
    let name = path.display().to_string();
    let text = std::fs::read(&path).map_err(|e| Error::input(&name, e))?;
    let text =
        String::from_utf8(text).map_err(|_| Error::Data(format!("{name}: not UTF-8 text")))?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: IndexEntry = serde_json::from_str(line)
            .map_err(|err| Error::Data(format!("{name}:{}: {err}", i + 1)))?;
        // Only files inside DIR: the index names them, it does not point elsewhere.
        if Path::new(&e.file).file_name() != Some(e.file.as_ref()) {
            return Err(Error::Data(format!(
                "{name}:{}: file {:?} is not a file name in the snapshot directory",
                i + 1,
                e.file
            )));
        }
        entries.push(e);
    }
    Ok(entries)
}

fn read_page(dir: &Path, e: &IndexEntry) -> Result<Vec<u8>> {
    let path = dir.join(&e.file);
    std::fs::read(&path).map_err(|err| Error::input(path.display().to_string(), err))
}

/// Scans each run of consecutive pages (same VM and target, GVAs PAGE
/// apart, full pages) as one buffer, taking the last copy of a page
/// delivered more than once: a match straddling pages is found there.
pub fn scan_runs(
    dir: &Path,
    entries: &[IndexEntry],
    scan: &mut Scan<'_>,
    out: &mut dyn Write,
) -> Result<()> {
    let mut latest: BTreeMap<(u32, u32, u64), &IndexEntry> = BTreeMap::new();
    for e in entries {
        latest.insert((e.vm_id, e.target_id, e.gva), e);
    }
    let mut run: Vec<PageRef> = Vec::new();
    let mut bytes: Vec<u8> = Vec::new();
    let mut flush = |run: &mut Vec<PageRef>, bytes: &mut Vec<u8>, scan: &mut Scan<'_>| {
        let res = if run.len() >= 2 {
            scan.scan(run, bytes, out)
        } else {
            Ok(())
        };
        run.clear();
        bytes.clear();
        res
    };
    for e in latest.values() {
        let data = read_page(dir, e)?;
        let follows = run.last().is_some_and(|last| {
            last.vm_id == e.vm_id
                && last.target_id == e.target_id
                && last.gva.checked_add(PAGE as u64) == Some(e.gva)
                && bytes.len().is_multiple_of(PAGE)
        });
        if !follows {
            flush(&mut run, &mut bytes, scan)?;
        }
        run.push(e.page_ref(dir));
        bytes.extend_from_slice(&data);
    }
    flush(&mut run, &mut bytes, scan)
}

/// `snapshot --from DIR --yara RULES`: every page, then every run; returns
/// the number of matches reported.
pub fn rescan(dir: &Path, rules: &Path, out: &mut dyn Write) -> Result<u64> {
    let rules = yara::compile_file(rules)?;
    let entries = read_index(dir)?;
    let mut scan = Scan::new(&rules);
    for e in &entries {
        let data = read_page(dir, e)?;
        scan.scan(&[e.page_ref(dir)], &data, out)?;
    }
    scan_runs(dir, &entries, &mut scan, out)?;
    Ok(scan.matches)
}

/// The sink of a live snapshot: saves pages, indexes them, scans each.
pub struct Saver<'a, 'r> {
    dir: PathBuf,
    index: File,
    names: HashSet<String>,
    pub entries: Vec<IndexEntry>,
    scan: Option<&'a mut Scan<'r>>,
    out: &'a mut dyn Write,
    /// Targets whose pages came without data (noted once each).
    no_data: HashSet<(u32, u32)>,
    /// Where to show "N of M pages saved" as pages arrive: stderr, only
    /// when stdout is a terminal (`follow`); None in scripts and pipes.
    pub progress: Option<(&'a mut dyn Write, Option<u64>)>,
}

/// The progress line of `snapshot`, redrawn in place (\r, no newline).
pub fn progress_line(saved: usize, count: Option<u64>) -> String {
    match count {
        Some(n) => format!("\rkvm-pfi: snapshot: {saved} of {n} pages saved"),
        None => format!("\rkvm-pfi: snapshot: {saved} pages saved"),
    }
}

impl<'a, 'r> Saver<'a, 'r> {
    /// Creates DIR if needed, and its index, which must not exist yet.
    pub fn create(
        dir: &Path,
        scan: Option<&'a mut Scan<'r>>,
        out: &'a mut dyn Write,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::from_io(format!("create {}", dir.display()), e))?;
        let path = dir.join(INDEX);
        let index = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Error::Msg(format!(
                        "{}: exists; snapshot into a new or empty directory",
                        path.display()
                    ))
                } else {
                    Error::from_io(format!("create {}", path.display()), e)
                }
            })?;
        Ok(Saver {
            dir: dir.to_path_buf(),
            index,
            names: HashSet::new(),
            entries: Vec::new(),
            scan,
            out,
            no_data: HashSet::new(),
            progress: None,
        })
    }

    fn file_name(&mut self, p: &events::PageResident) -> String {
        let base = format!("vm{}-t{}-{:016x}", p.vm_id, p.target_id, p.gva);
        let mut name = format!("{base}.page");
        let mut n = 2;
        while self.names.contains(&name) {
            name = format!("{base}-{n}.page");
            n += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// Writes the page, then its index line (so the index never names a
    /// file that is not there), then scans it.
    pub fn save(&mut self, p: events::PageResident, data: &[u8]) -> Result<()> {
        let file = self.file_name(&p);
        let path = self.dir.join(&file);
        std::fs::write(&path, data)
            .map_err(|e| Error::from_io(format!("write {}", path.display()), e))?;
        let entry = IndexEntry {
            vm_id: p.vm_id,
            target_id: p.target_id,
            cr3: p.cr3,
            gva: p.gva,
            gpa: p.gpa,
            how: how_of(p.how),
            file,
        };
        let mut line = serde_json::to_string(&entry).expect("plain structs serialize");
        line.push('\n');
        self.index
            .write_all(line.as_bytes())
            .map_err(|e| Error::from_io(format!("write {}", self.dir.join(INDEX).display()), e))?;
        if let Some(scan) = self.scan.as_deref_mut() {
            scan.scan(&[entry.page_ref(&self.dir)], data, self.out)?;
        }
        self.entries.push(entry);
        if let Some((w, count)) = self.progress.as_mut() {
            // Best effort: a progress line that cannot be shown is no error.
            let _ = write!(w, "{}", progress_line(self.entries.len(), *count));
            let _ = w.flush();
        }
        Ok(())
    }
}

impl Sink for Saver<'_, '_> {
    fn names(&self) -> (&'static str, &'static str) {
        ("snapshot", "pages")
    }

    fn event(
        &mut self,
        cmd: u8,
        attrs: &[u8],
        _now_ns: u64,
        note: &mut dyn FnMut(&str),
    ) -> Result<bool> {
        if u32::from(cmd) != abi::KVM_PFI_CMD_PAGE_RESIDENT {
            return Ok(false);
        }
        let Some(mut p) = events::page_resident(attrs) else {
            note("page-resident event without vm-id, target-id or gva: skipped");
            return Ok(false);
        };
        let Some(data) = p.data.take() else {
            if self.no_data.insert((p.vm_id, p.target_id)) {
                note(&format!(
                    "vm {} target {}: pages come without their contents (add the target with --read)",
                    p.vm_id, p.target_id
                ));
            }
            return Ok(false);
        };
        self.save(p, &data)?;
        Ok(true)
    }

    fn overrun(&mut self, _now_ns: u64, note: &mut dyn FnMut(&str)) -> Result<()> {
        note("events were lost (receive queue overrun): pages may be missing from the snapshot");
        Ok(())
    }
}

/// `snapshot --out DIR [--yara RULES]`: follows the events until --count
/// pages or --timeout, then scans the runs; returns the matches reported.
pub fn follow<T: Transport>(
    t: &mut T,
    dir: &Path,
    rules: Option<&Path>,
    opts: &FollowOpts,
    out: &mut dyn Write,
    io: &mut Io<'_>,
    progress: bool,
) -> Result<u64> {
    // Compiled first: a bad rule file fails before anything is followed.
    let rules = rules.map(yara::compile_file).transpose()?;
    let mut scan = rules.as_ref().map(Scan::new);
    let mut stderr = io::stderr();
    let mut saver = Saver::create(dir, scan.as_mut(), &mut *out)?;
    if progress {
        saver.progress = Some((&mut stderr, opts.count));
    }
    let followed = watch::run(t, opts, &mut saver, io);
    let entries = std::mem::take(&mut saver.entries);
    drop(saver);
    if progress && !entries.is_empty() {
        // End the progress line before the notes below.
        eprintln!();
    }
    if followed.is_err() && entries.is_empty() {
        // Nothing saved (e.g. no right to join the group): leave no empty
        // index behind to refuse the next try.
        let _ = std::fs::remove_file(dir.join(INDEX));
    }
    (io.note)(&format!(
        "snapshot: {} page{} saved in {}",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" },
        dir.display()
    ));
    if let Some(scan) = scan.as_mut() {
        scan_runs(dir, &entries, scan, out)?;
    }
    followed?;
    Ok(scan.map_or(0, |s| s.matches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit;
    use crate::events::tests::nla;
    use crate::genl::tests::nlmsg;
    use crate::watch::tests::{info, Fake};
    use crate::watch::Incoming;
    use std::time::Duration;

    fn resident_attrs(target: u32, gva: u64, how: u32, data: Option<&[u8]>) -> Vec<u8> {
        let mut a = [
            nla(abi::KVM_PFI_A_EVENT_VM_ID as u16, &3u32.to_ne_bytes()),
            nla(abi::KVM_PFI_A_EVENT_TARGET_ID as u16, &target.to_ne_bytes()),
            nla(abi::KVM_PFI_A_EVENT_CR3 as u16, &0x1234000u64.to_ne_bytes()),
            nla(abi::KVM_PFI_A_EVENT_GVA as u16, &gva.to_ne_bytes()),
            nla(
                abi::KVM_PFI_A_EVENT_GPA as u16,
                &(gva + 0x100_0000).to_ne_bytes(),
            ),
            nla(
                abi::KVM_PFI_A_EVENT_PAGE_SIZE as u16,
                &4096u32.to_ne_bytes(),
            ),
            nla(abi::KVM_PFI_A_EVENT_HOW as u16, &how.to_ne_bytes()),
            nla(abi::KVM_PFI_A_EVENT_INJECTIONS as u16, &1u32.to_ne_bytes()),
        ]
        .concat();
        if let Some(d) = data {
            a.extend(nla(abi::KVM_PFI_A_EVENT_DATA as u16, d));
        }
        a
    }

    fn resident(target: u32, gva: u64, how: u32, data: Option<&[u8]>) -> Incoming {
        Incoming::Datagram(nlmsg(
            30,
            abi::KVM_PFI_CMD_PAGE_RESIDENT as u8,
            0,
            &resident_attrs(target, gva, how, data),
        ))
    }

    fn filled(byte: u8) -> Vec<u8> {
        vec![byte; PAGE]
    }

    struct Followed {
        result: Result<u64>,
        out: String,
        notes: Vec<String>,
    }

    fn follow_fake(
        fake: &mut Fake,
        dir: &Path,
        rules: Option<&Path>,
        opts: FollowOpts,
    ) -> Followed {
        let mut out = Vec::new();
        let mut notes = Vec::new();
        let mut note = |s: &str| notes.push(s.to_string());
        let mut now = || 1;
        let result = follow(
            fake,
            dir,
            rules,
            &opts,
            &mut out,
            &mut Io {
                note: &mut note,
                now_ns: &mut now,
            },
            false,
        );
        Followed {
            result,
            out: String::from_utf8(out).unwrap(),
            notes,
        }
    }

    /// Pages delivered as events end up as files and index lines, which
    /// read_index gives back as they were written.
    #[test]
    fn saves_pages_and_index_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("snap");
        let mut fake = Fake {
            // Joined again after the overrun.
            resolves: [info(30, 9), info(30, 9)].into(),
            ..Default::default()
        };
        let a = filled(0xaa);
        let b = filled(0xbb);
        let c = filled(0xcc);
        fake.incoming.extend([
            resident(5, 0x7f00_0000_0000, abi::KVM_PFI_HOW_INJECTED, Some(&a)),
            // Not page-resident: not saved, not counted.
            Incoming::Datagram(nlmsg(30, abi::KVM_PFI_CMD_TARGET_ADDED as u8, 0, &[])),
            // A target without --read: noted once, not counted.
            resident(6, 0x1000, abi::KVM_PFI_HOW_GUEST, None),
            resident(6, 0x2000, abi::KVM_PFI_HOW_GUEST, None),
            Incoming::Overrun,
            resident(
                5,
                0x7f00_0000_1000,
                abi::KVM_PFI_HOW_ALREADY_RESIDENT,
                Some(&b),
            ),
            // The first page again (swapped out and back in).
            resident(5, 0x7f00_0000_0000, 42, Some(&c)),
            resident(5, 0x7f00_0000_2000, abi::KVM_PFI_HOW_INJECTED, Some(&c)),
        ]);
        let r = follow_fake(
            &mut fake,
            &dir,
            None,
            FollowOpts {
                count: Some(3),
                ..Default::default()
            },
        );
        assert_eq!(r.result.unwrap(), 0);
        assert_eq!(r.out, "", "no rules, nothing on stdout");
        assert_eq!(
            r.notes,
            [
                "vm 3 target 6: pages come without their contents (add the target with --read)",
                "events were lost (receive queue overrun): pages may be missing from the snapshot",
                &format!("snapshot: 3 pages saved in {}", dir.display()),
            ]
        );
        let entries = read_index(&dir).unwrap();
        let expect = |gva: u64, how: Option<How>, file: &str| IndexEntry {
            vm_id: 3,
            target_id: 5,
            cr3: 0x1234000,
            gva,
            gpa: gva + 0x100_0000,
            how,
            file: file.into(),
        };
        assert_eq!(
            entries,
            [
                expect(
                    0x7f00_0000_0000,
                    Some(How::Name("injected".into())),
                    "vm3-t5-00007f0000000000.page"
                ),
                expect(
                    0x7f00_0000_1000,
                    Some(How::Name("already-resident".into())),
                    "vm3-t5-00007f0000001000.page"
                ),
                expect(
                    0x7f00_0000_0000,
                    Some(How::Number(42)),
                    "vm3-t5-00007f0000000000-2.page"
                ),
            ]
        );
        assert_eq!(std::fs::read(dir.join(&entries[0].file)).unwrap(), a);
        assert_eq!(std::fs::read(dir.join(&entries[1].file)).unwrap(), b);
        assert_eq!(std::fs::read(dir.join(&entries[2].file)).unwrap(), c);
        // The lines as documented.
        let index = std::fs::read_to_string(dir.join(INDEX)).unwrap();
        assert_eq!(
            index.lines().next().unwrap(),
            r#"{"vm_id":3,"target_id":5,"cr3":19087360,"gva":139637976727552,"gpa":139637993504768,"how":"injected","file":"vm3-t5-00007f0000000000.page"}"#
        );
        // Written, read, written again: the same bytes.
        let rewritten: String = entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect();
        assert_eq!(rewritten, index);

        // A second snapshot into the same directory is refused.
        let mut fake = Fake {
            resolves: [info(30, 9)].into(),
            ..Default::default()
        };
        let r = follow_fake(&mut fake, &dir, None, FollowOpts::default());
        let err = r.result.unwrap_err();
        assert!(
            err.to_string()
                .ends_with("index.jsonl: exists; snapshot into a new or empty directory"),
            "{err}"
        );
        assert_eq!(err.exit_code(), exit::FAILURE);
    }

    #[test]
    fn timeout_before_count_scans_what_it_has() {
        let tmp = tempfile::tempdir().unwrap();
        let rules = tmp.path().join("r.yar");
        std::fs::write(
            &rules,
            r#"rule m { strings: $a = "STRADDLE" condition: $a }"#,
        )
        .unwrap();
        let mut p0 = filled(0);
        let mut p1 = filled(0);
        p0[PAGE - 3..].copy_from_slice(b"STR");
        p1[..5].copy_from_slice(b"ADDLE");
        let mut fake = Fake {
            resolves: [info(30, 9)].into(),
            ..Default::default()
        };
        fake.incoming.extend([
            resident(5, 0x10000, abi::KVM_PFI_HOW_INJECTED, Some(&p0)),
            resident(5, 0x11000, abi::KVM_PFI_HOW_INJECTED, Some(&p1)),
        ]);
        let dir = tmp.path().join("snap");
        let r = follow_fake(
            &mut fake,
            &dir,
            Some(&rules),
            FollowOpts {
                count: Some(5),
                timeout: Some(Duration::from_millis(20)),
                ..Default::default()
            },
        );
        let err = r.result.unwrap_err();
        assert_eq!(
            err.to_string(),
            "snapshot: 2 of 5 pages after the timeout: Connection timed out"
        );
        // The run was scanned all the same.
        let m: serde_json::Value = serde_json::from_str(r.out.trim()).unwrap();
        assert_eq!(m["gva"], 0x10000 + PAGE as u64 - 3);
        assert_eq!(
            m["file"],
            dir.join("vm3-t5-0000000000010000.page")
                .display()
                .to_string()
        );
    }

    #[test]
    fn bad_rules_fail_before_following() {
        let tmp = tempfile::tempdir().unwrap();
        let rules = tmp.path().join("r.yar");
        std::fs::write(&rules, "rule {").unwrap();
        let mut fake = Fake::default();
        let r = follow_fake(
            &mut fake,
            &tmp.path().join("snap"),
            Some(&rules),
            FollowOpts::default(),
        );
        let err = r.result.unwrap_err();
        assert_eq!(err.exit_code(), exit::DATAERR);
        assert!(
            err.to_string()
                .starts_with(&format!("{}:1:", rules.display())),
            "{err}"
        );
        assert_eq!(fake.resolve_calls, 0, "never subscribed");
        assert!(!tmp.path().join("snap").exists());
    }

    #[test]
    fn failed_follow_leaves_no_empty_index() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("snap");
        let mut fake = Fake {
            resolves: [info(30, 9)].into(),
            join_errno: Some(libc::EPERM),
            ..Default::default()
        };
        let r = follow_fake(&mut fake, &dir, None, FollowOpts::default());
        let err = r.result.unwrap_err();
        assert_eq!(err.exit_code(), exit::NOPERM, "{err}");
        assert!(!dir.join(INDEX).exists());
        // So the same command works once it may join.
        let mut fake = Fake {
            resolves: [info(30, 9)].into(),
            ..Default::default()
        };
        fake.incoming.push_back(resident(
            5,
            0x1000,
            abi::KVM_PFI_HOW_GUEST,
            Some(&filled(7)),
        ));
        let r = follow_fake(
            &mut fake,
            &dir,
            None,
            FollowOpts {
                count: Some(1),
                ..Default::default()
            },
        );
        r.result.unwrap();
        assert_eq!(read_index(&dir).unwrap().len(), 1);
    }

    fn write_snapshot(dir: &Path, pages: &[(u32, u64, &[u8])]) -> Vec<IndexEntry> {
        std::fs::create_dir_all(dir).unwrap();
        let mut index = String::new();
        let mut entries = Vec::new();
        for (target, gva, data) in pages {
            let e = IndexEntry {
                vm_id: 1,
                target_id: *target,
                cr3: 0x5000,
                gva: *gva,
                gpa: 0,
                how: Some(How::Name("injected".into())),
                file: format!("vm1-t{target}-{gva:016x}.page"),
            };
            std::fs::write(dir.join(&e.file), data).unwrap();
            index += &(serde_json::to_string(&e).unwrap() + "\n");
            entries.push(e);
        }
        std::fs::write(dir.join(INDEX), index).unwrap();
        entries
    }

    /// The offline rescan: a match inside one page, one straddling two
    /// consecutive pages, none in clean pages, and no straddling across
    /// pages that are not consecutive (or not of one target).
    #[test]
    fn rescan_finds_in_page_and_straddling_matches() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("snap");
        let mut p1 = filled(0x11);
        p1[100..111].copy_from_slice(b"EVIL-MARKER");
        p1[PAGE - 4..].copy_from_slice(b"EVIL");
        let mut p2 = filled(0x22);
        p2[..7].copy_from_slice(b"-MARKER");
        // A half marker at the end of a page whose neighbour is not there...
        let mut p5 = filled(0x33);
        p5[PAGE - 4..].copy_from_slice(b"EVIL");
        // ... and one whose next page belongs to another target.
        let mut other = filled(0x44);
        other[..7].copy_from_slice(b"-MARKER");
        let clean = filled(0x55);
        write_snapshot(
            &dir,
            &[
                (2, 0x40_2000, &p2),
                (2, 0x40_0000, &clean),
                (2, 0x40_1000, &p1),
                (2, 0x40_5000, &p5),
                (2, 0x40_7000, &clean),
                (3, 0x40_6000, &other),
            ],
        );
        let rules = tmp.path().join("r.yar");
        std::fs::write(
            &rules,
            "rule evil_marker {\n  strings:\n    $m = \"EVIL-MARKER\"\n  condition:\n    $m\n}\n",
        )
        .unwrap();
        let mut out = Vec::new();
        let n = rescan(&dir, &rules, &mut out).unwrap();
        let lines: Vec<serde_json::Value> = std::str::from_utf8(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let file = |name: &str| dir.join(name).display().to_string();
        assert_eq!(
            lines,
            [
                serde_json::json!({"rule":"evil_marker","pattern":"$m","vm_id":1,"target_id":2,
                    "gva":0x40_1064,"offset":100,"length":11,"file":file("vm1-t2-0000000000401000.page")}),
                serde_json::json!({"rule":"evil_marker","pattern":"$m","vm_id":1,"target_id":2,
                    "gva":0x40_1ffc,"offset":4092,"length":11,"file":file("vm1-t2-0000000000401000.page")}),
            ]
        );
        assert_eq!(n, 2);

        // Rescanning gives the same; --from with nothing matching gives nothing.
        let mut again = Vec::new();
        rescan(&dir, &rules, &mut again).unwrap();
        assert_eq!(again, out);
        std::fs::write(
            &rules,
            "rule nothing { strings: $a = \"NOT THERE\" condition: $a }",
        )
        .unwrap();
        let mut none = Vec::new();
        assert_eq!(rescan(&dir, &rules, &mut none).unwrap(), 0);
        assert!(none.is_empty());
    }

    #[test]
    fn rescan_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let rules = tmp.path().join("r.yar");
        std::fs::write(&rules, "rule a { condition: true }").unwrap();
        // No snapshot there: missing input.
        let err = rescan(&tmp.path().join("none"), &rules, &mut Vec::new()).unwrap_err();
        assert_eq!(err.exit_code(), exit::NOINPUT, "{err}");
        // A broken index line: bad data, located.
        let dir = tmp.path().join("snap");
        write_snapshot(&dir, &[(1, 0x1000, &filled(1))]);
        let mut index = std::fs::read_to_string(dir.join(INDEX)).unwrap();
        index += "{\"vm_id\":1}\n";
        std::fs::write(dir.join(INDEX), &index).unwrap();
        let err = rescan(&dir, &rules, &mut Vec::new()).unwrap_err();
        assert_eq!(err.exit_code(), exit::DATAERR, "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("{}:2: ", dir.join(INDEX).display())),
            "{err}"
        );
        // An index naming a file outside the directory.
        let escape = index
            .lines()
            .next()
            .unwrap()
            .replace("vm1-t1-", "../vm1-t1-");
        std::fs::write(dir.join(INDEX), escape + "\n").unwrap();
        let err = rescan(&dir, &rules, &mut Vec::new()).unwrap_err();
        assert_eq!(err.exit_code(), exit::DATAERR, "{err}");
        // A page file that went away: missing input.
        write_snapshot(&dir, &[(1, 0x1000, &filled(1))]);
        std::fs::remove_file(dir.join("vm1-t1-0000000000001000.page")).unwrap();
        let err = rescan(&dir, &rules, &mut Vec::new()).unwrap_err();
        assert_eq!(err.exit_code(), exit::NOINPUT, "{err}");
    }

    #[test]
    fn progress_only_where_asked() {
        assert_eq!(
            progress_line(2, Some(5)),
            "\rkvm-pfi: snapshot: 2 of 5 pages saved"
        );
        assert_eq!(progress_line(1, None), "\rkvm-pfi: snapshot: 1 pages saved");
        let dir = tempfile::tempdir().unwrap();
        let page = vec![0u8; 4096];
        let p = |gva| events::PageResident {
            vm_id: 1,
            target_id: 2,
            cr3: 0,
            gva,
            gpa: 0,
            how: None,
            data: None,
        };
        let mut out = Vec::new();
        let mut shown = Vec::new();
        {
            let mut saver = Saver::create(dir.path(), None, &mut out).unwrap();
            // By default (not a terminal): nothing but the files.
            saver.save(p(0x1000), &page).unwrap();
            saver.progress = Some((&mut shown, Some(3)));
            saver.save(p(0x2000), &page).unwrap();
        }
        assert!(out.is_empty());
        assert_eq!(
            String::from_utf8(shown).unwrap(),
            "\rkvm-pfi: snapshot: 2 of 3 pages saved"
        );
    }
}
