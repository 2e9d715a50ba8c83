// SPDX-License-Identifier: GPL-2.0
//! Targets of a VM: turning KVM_PFI_TARGET_* results into text and JSON.
//!
//! Enum names: the page state is an ioctl-only enum (kvm_pfi.h) and is named
//! here; `how` and `fail_reason` are the netlink spec's enums and are named by
//! the tables of events.rs, so that `watch` and `target pages` agree.

use serde::Serialize;

use crate::abi;
use crate::cli::TargetSpec;
use crate::error::Error;
use crate::events::{self, Value};

/// Entries of `enum kvm_pfi_page_state`.
pub const PAGE_STATES: &[(u32, &str)] = &[
    (abi::KVM_PFI_PAGE_UNKNOWN, "unknown"),
    (abi::KVM_PFI_PAGE_WAITING, "waiting"),
    (abi::KVM_PFI_PAGE_INJECTED, "injected"),
    (abi::KVM_PFI_PAGE_RESIDENT, "resident"),
    (abi::KVM_PFI_PAGE_FAILED, "failed"),
];

/// KVM_PFI_TARGET_* flags by name, in bit order.
const TARGET_FLAGS: &[(u32, &str)] = &[
    (abi::KVM_PFI_TARGET_KERNEL, "kernel"),
    (abi::KVM_PFI_TARGET_READ, "read"),
    (abi::KVM_PFI_TARGET_WRITE, "write"),
    (abi::KVM_PFI_TARGET_KPTI, "kpti"),
    (abi::KVM_PFI_TARGET_PROTECT, "protect"),
    (abi::KVM_PFI_TARGET_ENFORCE, "enforce"),
    (abi::KVM_PFI_TARGET_NO_VMA_CHECK, "no-vma-check"),
];

/// KVM_PFI_PAGE_* flags (kvm_pfi_page_info.flags) by name, in bit order.
const PAGE_FLAGS: &[(u32, &str)] = &[
    (abi::KVM_PFI_PAGE_PROTECTED, "protected"),
    (abi::KVM_PFI_PAGE_ENFORCED, "enforced"),
    (abi::KVM_PFI_PAGE_SCANNED, "scanned"),
];

/// Human form of KVM_PFI_TARGET_* flags.
pub fn target_flags_text(flags: u32) -> String {
    abi::flags_text(flags, TARGET_FLAGS)
}

/// Human form of KVM_PFI_PAGE_* flags.
pub fn page_flags_text(flags: u32) -> String {
    abi::flags_text(flags, PAGE_FLAGS)
}

/// TARGET_ADD's E2BIG names the limits, which depend on the flags.
pub fn add_error_hint(err: Error, flags: u32) -> Error {
    if err.errno() != Some(libc::E2BIG) {
        return err;
    }
    let limit = if flags & abi::KVM_PFI_TARGET_ENFORCE != 0 {
        format!(
            "at most {} pages with --enforce",
            abi::KVM_PFI_MAX_ENFORCE_PAGES
        )
    } else {
        format!("at most {} pages", abi::KVM_PFI_MAX_TARGET_PAGES)
    };
    Error::Msg(format!("{err} ({limit})"))
}

/// KVM_PFI_RULE_ADD's errors that have a likely cause to name.
pub fn rule_error_hint(err: Error, vm: u32) -> Error {
    match err.errno() {
        Some(libc::ENODATA) => Error::Msg(format!(
            "{err} (vm {vm} has no Linux profile: kvm-pfi profile load --vm {vm} PROFILE)"
        )),
        Some(libc::ENOSPC) => Error::Msg(format!(
            "{err} (at most {} rules per VM)",
            abi::KVM_PFI_MAX_RULES
        )),
        Some(libc::EINVAL) => Error::Msg(format!(
            "{err} (a rule's targets take only --read, --write, --kpti, --protect, --enforce)"
        )),
        _ => err,
    }
}

/// KVM_PFI_TARGET_ADD's argument for the command line's options.
pub fn target_from_spec(spec: &TargetSpec) -> abi::kvm_pfi_target {
    abi::kvm_pfi_target {
        vm_id: spec.vm,
        flags: spec.flags(),
        // clap requires all three without --process/--pid.
        cr3: spec.cr3.unwrap_or(0),
        gva: spec.gva.unwrap_or(0),
        len: spec.len.unwrap_or(0),
        // 0 selects the module parameter.
        timeout_ms: spec.timeout_ms.unwrap_or(0),
        max_tries: spec.max_tries.unwrap_or(0),
        ..Default::default()
    }
}

/// The rule `target add --process/--pid --region` asks for.
pub fn rule_from_spec(spec: &TargetSpec) -> abi::kvm_pfi_rule {
    let mut r = abi::kvm_pfi_rule {
        vm_id: spec.vm,
        pid: spec.pid.unwrap_or(0),
        target_flags: spec.flags(),
        ..Default::default()
    };
    if let Some(region) = &spec.region {
        r.region = region.region;
        copy_c(&mut r.pattern, &region.pattern);
    }
    if let Some(name) = &spec.process {
        copy_c(&mut r.name, name);
    }
    r
}

/// `s`, NUL-padded into a C char array; cut to leave the NUL (the module
/// refuses an array without one).
fn copy_c(out: &mut [std::ffi::c_char], s: &str) {
    let room = out.len().saturating_sub(1);
    for (d, b) in out.iter_mut().zip(s.bytes().take(room)) {
        *d = b as std::ffi::c_char;
    }
}

fn c_text(b: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = b.iter().map(|&c| c as u8).take_while(|&c| c != 0).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `region` as `--region` spells it.
pub fn region_text(region: u32, pattern: &str) -> String {
    match region {
        abi::KVM_PFI_REGION_EXE => "exe".into(),
        abi::KVM_PFI_REGION_STACK => "stack".into(),
        abi::KVM_PFI_REGION_HEAP => "heap".into(),
        abi::KVM_PFI_REGION_ANON => "anon".into(),
        abi::KVM_PFI_REGION_ALL => "all".into(),
        abi::KVM_PFI_REGION_FILE => format!("file:{pattern}"),
        n => n.to_string(),
    }
}

/// `target add --process/--pid --json`.
#[derive(Debug, Serialize)]
pub struct NewRuleJson {
    pub rule_id: u32,
}

/// One rule of `rule ls --json`.
#[derive(Debug, Serialize)]
pub struct RuleJson {
    pub rule_id: u32,
    pub pid: i32,
    pub process: String,
    pub region: String,
    pub target_flags: u32,
    pub nr_targets: u32,
    pub pages: u64,
    pub pages_uncovered: u64,
    pub nr_processes: u32,
    pub walk_errors: u32,
}

#[derive(Debug, Serialize)]
pub struct RulesJson {
    pub vm_id: u32,
    pub rules: Vec<RuleJson>,
}

pub fn rules_json(vm_id: u32, rules: &[abi::kvm_pfi_rule]) -> RulesJson {
    RulesJson {
        vm_id,
        rules: rules
            .iter()
            .map(|r| RuleJson {
                rule_id: r.rule_id,
                pid: r.pid,
                process: c_text(&r.name),
                region: region_text(r.region, &c_text(&r.pattern)),
                target_flags: r.target_flags,
                nr_targets: r.nr_targets,
                pages: r.pages,
                pages_uncovered: r.pages_uncovered,
                nr_processes: r.nr_processes,
                walk_errors: r.walk_errors,
            })
            .collect(),
    }
}

pub fn rules_text(vm_id: u32, rules: &[abi::kvm_pfi_rule]) -> String {
    if rules.is_empty() {
        return format!("vm {vm_id} has no rules");
    }
    let mut text = format!(
        "{:<5} {:<18} {:<20} {:<9} {:<8} {:<8} {:<10} {}",
        "RULE", "PROCESS", "REGION", "PROCESSES", "TARGETS", "PAGES", "UNCOVERED", "FLAGS"
    );
    for r in rules {
        let who = if r.pid != 0 { format!("pid {}", r.pid) } else { c_text(&r.name) };
        text.push_str(&format!(
            "\n{:<5} {:<18} {:<20} {:<9} {:<8} {:<8} {:<10} {}",
            r.rule_id,
            who,
            region_text(r.region, &c_text(&r.pattern)),
            r.nr_processes,
            r.nr_targets,
            r.pages,
            r.pages_uncovered,
            target_flags_text(r.target_flags)
        ));
    }
    text
}

/// `target add --json`.
#[derive(Debug, Serialize)]
pub struct NewTargetJson {
    pub target_id: u32,
}

/// `target rm --json`.
#[derive(Debug, Serialize)]
pub struct TargetIdJson {
    pub vm_id: u32,
    pub target_id: u32,
}

/// One target of `target ls --json`; keys as in the target-added event.
#[derive(Debug, Serialize)]
pub struct TargetJson {
    pub target_id: u32,
    /// The rule that made it, 0: none.
    pub rule_id: u32,
    pub target_flags: u32,
    pub cr3: u64,
    pub gva: u64,
    pub len: u64,
    pub timeout_ms: u32,
    pub max_tries: u32,
}

#[derive(Debug, Serialize)]
pub struct TargetsJson {
    pub vm_id: u32,
    pub targets: Vec<TargetJson>,
}

pub fn targets_json(vm_id: u32, targets: &[abi::kvm_pfi_target]) -> TargetsJson {
    TargetsJson {
        vm_id,
        targets: targets
            .iter()
            .map(|t| TargetJson {
                target_id: t.target_id,
                rule_id: t.rule_id,
                target_flags: t.flags,
                cr3: t.cr3,
                gva: t.gva,
                len: t.len,
                timeout_ms: t.timeout_ms,
                max_tries: t.max_tries,
            })
            .collect(),
    }
}

pub fn targets_text(vm_id: u32, targets: &[abi::kvm_pfi_target]) -> String {
    if targets.is_empty() {
        return format!("vm {vm_id} has no targets");
    }
    let mut text = format!(
        "{:<7} {:<5} {:<18} {:<18} {:<10} {:<20} {:<10} {}",
        "TARGET", "RULE", "CR3", "GVA", "LEN", "FLAGS", "TIMEOUT-MS", "MAX-TRIES"
    );
    for t in targets {
        text.push_str(&format!(
            "\n{:<7} {:<5} {:<#18x} {:<#18x} {:<10} {:<20} {:<10} {}",
            t.target_id,
            if t.rule_id == 0 { "-".to_string() } else { t.rule_id.to_string() },
            t.cr3,
            t.gva,
            t.len,
            target_flags_text(t.flags),
            t.timeout_ms,
            t.max_tries
        ));
    }
    text
}

/// One page of `target pages --json`. `how` is null unless the page is
/// resident, `fail_reason` null unless it failed; enums are named as in the
/// netlink spec (`page_state` as in kvm_pfi.h), unknown values as numbers.
#[derive(Debug, Serialize)]
pub struct PageJson {
    pub gva: u64,
    pub gpa: u64,
    pub state: Value,
    pub how: Option<Value>,
    pub injections: u32,
    pub reinjections: u32,
    pub page_size: u32,
    pub fail_reason: Option<Value>,
    pub entries_to_delivery: u32,
    /// KVM_PFI_PAGE_* bits: protected 1, enforced 2, scanned 4.
    pub flags: u32,
}

#[derive(Debug, Serialize)]
pub struct PagesJson {
    pub vm_id: u32,
    pub target_id: u32,
    pub pages: Vec<PageJson>,
}

pub fn page_json(p: &abi::kvm_pfi_page_info) -> PageJson {
    PageJson {
        gva: p.gva,
        gpa: p.gpa,
        state: events::enum_value(PAGE_STATES, p.state),
        how: (p.state == abi::KVM_PFI_PAGE_RESIDENT)
            .then(|| events::enum_value(events::HOWS, p.how)),
        injections: p.injections,
        reinjections: p.reinjections,
        page_size: p.page_size,
        fail_reason: (p.state == abi::KVM_PFI_PAGE_FAILED)
            .then(|| events::enum_value(events::FAIL_REASONS, p.fail_reason)),
        entries_to_delivery: p.entries_to_delivery,
        flags: p.flags,
    }
}

pub fn pages_json(vm_id: u32, target_id: u32, pages: &[abi::kvm_pfi_page_info]) -> PagesJson {
    PagesJson {
        vm_id,
        target_id,
        pages: pages.iter().map(page_json).collect(),
    }
}

fn opt_text(v: &Option<Value>) -> String {
    v.as_ref().map_or_else(|| "-".into(), events::value_text)
}

pub fn pages_text(pages: &[abi::kvm_pfi_page_info]) -> String {
    let mut text = format!(
        "{:<18} {:<8} {:<16} {:<18} {:<10} {:<10} {:<12} {:<18} {}",
        "GVA",
        "STATE",
        "HOW",
        "GPA",
        "PAGE-SIZE",
        "INJECTIONS",
        "REINJECTIONS",
        "FAIL-REASON",
        "FLAGS"
    );
    for p in pages {
        let j = page_json(p);
        let resident = p.state == abi::KVM_PFI_PAGE_RESIDENT;
        let (gpa, size) = if resident {
            (format!("{:#x}", p.gpa), p.page_size.to_string())
        } else {
            ("-".into(), "-".into())
        };
        text.push_str(&format!(
            "\n{:<#18x} {:<8} {:<16} {:<18} {:<10} {:<10} {:<12} {:<18} {}",
            p.gva,
            events::value_text(&j.state),
            opt_text(&j.how),
            gpa,
            size,
            p.injections,
            p.reinjections,
            opt_text(&j.fail_reason),
            page_flags_text(p.flags)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(state: u32) -> abi::kvm_pfi_page_info {
        abi::kvm_pfi_page_info {
            gva: 0x7f00_0000_1000,
            state,
            ..Default::default()
        }
    }

    #[test]
    fn page_state_names() {
        let name = |s| events::value_text(&events::enum_value(PAGE_STATES, s));
        assert_eq!(name(abi::KVM_PFI_PAGE_UNKNOWN), "unknown");
        assert_eq!(name(abi::KVM_PFI_PAGE_WAITING), "waiting");
        assert_eq!(name(abi::KVM_PFI_PAGE_INJECTED), "injected");
        assert_eq!(name(abi::KVM_PFI_PAGE_RESIDENT), "resident");
        assert_eq!(name(abi::KVM_PFI_PAGE_FAILED), "failed");
        assert_eq!(events::enum_value(PAGE_STATES, 77), Value::Uint(77));
        let mut ids: Vec<u32> = PAGE_STATES.iter().map(|(v, _)| *v).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), PAGE_STATES.len(), "duplicate page states");
    }

    #[test]
    fn how_and_fail_reason_names_come_from_the_event_tables() {
        let how = |h| {
            let p = abi::kvm_pfi_page_info {
                how: h,
                ..page(abi::KVM_PFI_PAGE_RESIDENT)
            };
            page_json(&p).how
        };
        assert_eq!(
            how(abi::KVM_PFI_HOW_ALREADY_RESIDENT),
            Some(Value::Str("already-resident".into()))
        );
        assert_eq!(
            how(abi::KVM_PFI_HOW_INJECTED),
            Some(Value::Str("injected".into()))
        );
        assert_eq!(
            how(abi::KVM_PFI_HOW_GUEST),
            Some(Value::Str("guest".into()))
        );
        assert_eq!(
            how(abi::KVM_PFI_HOW_INJECTED_FILE),
            Some(Value::Str("injected-file".into()))
        );
        assert_eq!(how(42), Some(Value::Uint(42)));

        let fail = |r| {
            let p = abi::kvm_pfi_page_info {
                fail_reason: r,
                ..page(abi::KVM_PFI_PAGE_FAILED)
            };
            page_json(&p).fail_reason
        };
        for (v, name) in [
            (abi::KVM_PFI_FAIL_REASON_TIMEOUT, "timeout"),
            (
                abi::KVM_PFI_FAIL_REASON_ADDRESS_SPACE_GONE,
                "address-space-gone",
            ),
            (abi::KVM_PFI_FAIL_REASON_INVALID_TABLES, "invalid-tables"),
            (abi::KVM_PFI_FAIL_REASON_UNMAPPED, "unmapped"),
            (abi::KVM_PFI_FAIL_REASON_NOT_SWAPPED, "not-swapped"),
            (abi::KVM_PFI_FAIL_REASON_NO_VMA, "no-vma"),
            (abi::KVM_PFI_FAIL_REASON_VMA_DENIES, "vma-denies"),
        ] {
            assert_eq!(fail(v), Some(Value::Str(name.into())));
        }
        // how/fail_reason are meaningless (0) outside their states.
        let waiting = page_json(&page(abi::KVM_PFI_PAGE_WAITING));
        assert_eq!((waiting.how, waiting.fail_reason), (None, None));
    }

    #[test]
    fn pages_json_shape() {
        let resident = abi::kvm_pfi_page_info {
            gva: 0x1000,
            gpa: 0x2345000,
            state: abi::KVM_PFI_PAGE_RESIDENT,
            how: abi::KVM_PFI_HOW_INJECTED,
            injections: 2,
            reinjections: 1,
            page_size: 4096,
            entries_to_delivery: 3,
            flags: abi::KVM_PFI_PAGE_PROTECTED | abi::KVM_PFI_PAGE_SCANNED,
            ..Default::default()
        };
        let failed = abi::kvm_pfi_page_info {
            gva: 0x2000,
            state: abi::KVM_PFI_PAGE_FAILED,
            fail_reason: abi::KVM_PFI_FAIL_REASON_UNMAPPED,
            injections: 5,
            ..Default::default()
        };
        let j = serde_json::to_string(&pages_json(3, 7, &[resident, failed])).unwrap();
        assert_eq!(
            j,
            concat!(
                r#"{"vm_id":3,"target_id":7,"pages":["#,
                r#"{"gva":4096,"gpa":36982784,"state":"resident","how":"injected","injections":2,"reinjections":1,"page_size":4096,"fail_reason":null,"entries_to_delivery":3,"flags":5},"#,
                r#"{"gva":8192,"gpa":0,"state":"failed","how":null,"injections":5,"reinjections":0,"page_size":0,"fail_reason":"unmapped","entries_to_delivery":0,"flags":0}"#,
                "]}"
            )
        );
        assert!(!j.contains('\n'));
        assert_eq!(
            serde_json::to_string(&pages_json(1, 2, &[])).unwrap(),
            r#"{"vm_id":1,"target_id":2,"pages":[]}"#
        );
    }

    #[test]
    fn pages_text_lines() {
        let resident = abi::kvm_pfi_page_info {
            gpa: 0x5000,
            how: abi::KVM_PFI_HOW_GUEST,
            page_size: 2 << 20,
            flags: abi::KVM_PFI_PAGE_PROTECTED
                | abi::KVM_PFI_PAGE_ENFORCED
                | abi::KVM_PFI_PAGE_SCANNED,
            ..page(abi::KVM_PFI_PAGE_RESIDENT)
        };
        let text = pages_text(&[resident, page(abi::KVM_PFI_PAGE_UNKNOWN)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "0x7f0000001000",
                "resident",
                "guest",
                "0x5000",
                "2097152",
                "0",
                "0",
                "-",
                "protected,enforced,scanned"
            ]
        );
        let cols: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "0x7f0000001000",
                "unknown",
                "-",
                "-",
                "-",
                "0",
                "0",
                "-",
                "-"
            ]
        );
        assert!(
            lines[0].ends_with("FAIL-REASON        FLAGS"),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn targets_rendering() {
        let t = abi::kvm_pfi_target {
            vm_id: 3,
            flags: abi::KVM_PFI_TARGET_KERNEL | abi::KVM_PFI_TARGET_KPTI,
            cr3: 0x1234000,
            gva: 0xffff_8000_0000_0000,
            len: 8192,
            target_id: 5,
            timeout_ms: 500,
            max_tries: 3,
            rule_id: 2,
        };
        assert_eq!(
            serde_json::to_string(&targets_json(3, &[t])).unwrap(),
            r#"{"vm_id":3,"targets":[{"target_id":5,"rule_id":2,"target_flags":9,"cr3":19087360,"gva":18446603336221196288,"len":8192,"timeout_ms":500,"max_tries":3}]}"#
        );
        let text = targets_text(3, &[t]);
        let cols: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "5",
                "2",
                "0x1234000",
                "0xffff800000000000",
                "8192",
                "kernel,kpti",
                "500",
                "3"
            ]
        );
        assert_eq!(targets_text(3, &[]), "vm 3 has no targets");
    }

    #[test]
    fn rules_rendering() {
        let mut r = rule_from_spec(&TargetSpec {
            vm: 4,
            cr3: None,
            gva: None,
            len: None,
            process: Some("sleep".into()),
            pid: None,
            region: Some(crate::cli::RegionArg { region: abi::KVM_PFI_REGION_FILE, pattern: "*/libc.so*".into() }),
            kernel: false,
            read: true,
            write: false,
            kpti: false,
            protect: false,
            enforce: false,
            no_vma_check: false,
            timeout_ms: None,
            max_tries: None,
        });
        assert_eq!((r.vm_id, r.pid, r.target_flags), (4, 0, abi::KVM_PFI_TARGET_READ));
        assert_eq!(c_text(&r.name), "sleep");
        assert_eq!(c_text(&r.pattern), "*/libc.so*");
        (r.rule_id, r.nr_targets, r.pages, r.nr_processes) = (7, 2, 600, 1);
        let j = serde_json::to_string(&rules_json(4, &[r])).unwrap();
        assert!(j.contains(r#""rule_id":7,"pid":0,"process":"sleep","region":"file:*/libc.so*""#), "{j}");
        let text = rules_text(4, &[r]);
        let cols: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(cols, ["7", "sleep", "file:*/libc.so*", "1", "2", "600", "0", "read"]);
        assert_eq!(rules_text(4, &[]), "vm 4 has no rules");
        // A name that fills the array keeps its NUL.
        let mut name = [0 as std::ffi::c_char; 4];
        copy_c(&mut name, "abcdef");
        assert_eq!(c_text(&name), "abc");
    }

    #[test]
    fn target_flags() {
        assert_eq!(target_flags_text(0), "-");
        assert_eq!(
            target_flags_text(abi::KVM_PFI_TARGET_FLAGS_ALL),
            "kernel,read,write,kpti,protect,enforce,no-vma-check"
        );
        assert_eq!(
            target_flags_text(abi::KVM_PFI_TARGET_PROTECT | abi::KVM_PFI_TARGET_ENFORCE),
            "protect,enforce"
        );
    }

    #[test]
    fn page_flags() {
        assert_eq!(page_flags_text(0), "-");
        assert_eq!(page_flags_text(abi::KVM_PFI_PAGE_SCANNED), "scanned");
        assert_eq!(
            page_flags_text(abi::KVM_PFI_PAGE_PROTECTED | abi::KVM_PFI_PAGE_ENFORCED | 0x80),
            "protected,enforced,0x80"
        );
    }

    #[test]
    fn too_many_pages_names_the_limit() {
        let e2big = || Error::os("KVM_PFI_TARGET_ADD vm 1", libc::E2BIG);
        let e = add_error_hint(
            e2big(),
            abi::KVM_PFI_TARGET_PROTECT | abi::KVM_PFI_TARGET_ENFORCE,
        );
        assert_eq!(
            e.to_string(),
            "KVM_PFI_TARGET_ADD vm 1: Argument list too long (at most 64 pages with --enforce)"
        );
        assert_eq!(e.exit_code(), 1);
        let e = add_error_hint(e2big(), 0);
        assert!(e.to_string().ends_with("(at most 512 pages)"), "{e}");
        // Other errors are left alone (the selftests look for their text).
        let e = add_error_hint(Error::os("KVM_PFI_TARGET_ADD vm 1", libc::EINVAL), 0);
        assert_eq!(e.to_string(), "KVM_PFI_TARGET_ADD vm 1: Invalid argument");
        assert_eq!(
            target_flags_text(abi::KVM_PFI_TARGET_READ | 0x100),
            "read,0x100"
        );
    }
}
