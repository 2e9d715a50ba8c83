// SPDX-License-Identifier: GPL-2.0
//! Decoding and printing the events of the "kvm_pfi" netlink family.
//!
//! The names and types come from Documentation/netlink/specs/kvm_pfi.yaml;
//! the numbers from the YNL-generated header via bindgen. When the spec grows,
//! the header is regenerated and the `tables_cover_the_header` test points at
//! what to add here; until then new attributes print as "attr_<n>" in hex and
//! new commands as "cmd_<n>", so an older tool keeps working with a newer
//! module.

use std::fmt::Write as _;

use netlink_packet_core::{NlaBuffer, NlasIterator};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::abi;

/// How an attribute's payload is typed in the YNL spec.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    U32,
    U64,
    String,
    /// A u32 whose values are named by a spec enum.
    Enum(&'static [(u32, &'static str)]),
    /// Alignment filler for u64s: carries nothing.
    Pad,
    /// Bytes (page contents), printed in hex.
    Binary,
}

#[derive(Debug)]
pub struct AttrDesc {
    pub id: u16,
    /// The spec's attribute name ("vm-id"); printed with '-' as '_'.
    pub name: &'static str,
    pub kind: Kind,
}

/// Entries of the spec's `detach-reason` enum.
pub const DETACH_REASONS: &[(u32, &str)] = &[
    (abi::KVM_PFI_DETACH_REASON_REQUESTED, "requested"),
    (abi::KVM_PFI_DETACH_REASON_FILE_CLOSED, "file-closed"),
    (abi::KVM_PFI_DETACH_REASON_VM_EXITED, "vm-exited"),
    (abi::KVM_PFI_DETACH_REASON_UNLOAD, "unload"),
];

/// Entries of the spec's `how` enum.
pub const HOWS: &[(u32, &str)] = &[
    (abi::KVM_PFI_HOW_ALREADY_RESIDENT, "already-resident"),
    (abi::KVM_PFI_HOW_INJECTED, "injected"),
    (abi::KVM_PFI_HOW_GUEST, "guest"),
    (abi::KVM_PFI_HOW_INJECTED_FILE, "injected-file"),
];

/// Entries of the spec's `fail-reason` enum.
pub const FAIL_REASONS: &[(u32, &str)] = &[
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
];

/// The spec's `event` attribute set.
pub const EVENT_ATTRS: &[AttrDesc] = &[
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_VM_ID as u16,
        name: "vm-id",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_VMM_PID as u16,
        name: "vmm-pid",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_STATS_ID as u16,
        name: "stats-id",
        kind: Kind::String,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_ATTACH_FLAGS as u16,
        name: "attach-flags",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_DETACH_REASON as u16,
        name: "detach-reason",
        kind: Kind::Enum(DETACH_REASONS),
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_ENTRIES as u16,
        name: "entries",
        kind: Kind::U64,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_EXITS as u16,
        name: "exits",
        kind: Kind::U64,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_TARGET_ID as u16,
        name: "target-id",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_TARGET_FLAGS as u16,
        name: "target-flags",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_CR3 as u16,
        name: "cr3",
        kind: Kind::U64,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_GVA as u16,
        name: "gva",
        kind: Kind::U64,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_LEN as u16,
        name: "len",
        kind: Kind::U64,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_GPA as u16,
        name: "gpa",
        kind: Kind::U64,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_PAGE_SIZE as u16,
        name: "page-size",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_HOW as u16,
        name: "how",
        kind: Kind::Enum(HOWS),
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_INJECTIONS as u16,
        name: "injections",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_REINJECTIONS as u16,
        name: "reinjections",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_FAIL_REASON as u16,
        name: "fail-reason",
        kind: Kind::Enum(FAIL_REASONS),
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_DATA as u16,
        name: "data",
        kind: Kind::Binary,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_RULE_ID as u16,
        name: "rule-id",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_RULE_NAME as u16,
        name: "rule-name",
        kind: Kind::String,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_OFFSET as u16,
        name: "offset",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_LENGTH as u16,
        name: "length",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_GENERATION as u16,
        name: "generation",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_RESTORED as u16,
        name: "restored",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_NR_RULES as u16,
        name: "nr-rules",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_LOST as u16,
        name: "lost",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_PID as u16,
        name: "pid",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_PPID as u16,
        name: "ppid",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_COMM as u16,
        name: "comm",
        kind: Kind::String,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_TASK as u16,
        name: "task",
        kind: Kind::U64,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_TASK_FLAGS as u16,
        name: "task-flags",
        kind: Kind::U32,
    },
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_EXE as u16,
        name: "exe",
        kind: Kind::String,
    },
    #[cfg(kvm_pfi_has_pad_attr)]
    AttrDesc {
        id: abi::KVM_PFI_A_EVENT_PAD as u16,
        name: "pad",
        kind: Kind::Pad,
    },
];

/// The spec's operations (all of them events), by command number.
pub const COMMANDS: &[(u8, &str)] = &[
    (abi::KVM_PFI_CMD_VM_ATTACHED as u8, "vm-attached"),
    (abi::KVM_PFI_CMD_VM_DETACHED as u8, "vm-detached"),
    (abi::KVM_PFI_CMD_TARGET_ADDED as u8, "target-added"),
    (abi::KVM_PFI_CMD_TARGET_REMOVED as u8, "target-removed"),
    (abi::KVM_PFI_CMD_PAGE_RESIDENT as u8, "page-resident"),
    (abi::KVM_PFI_CMD_PAGE_FAILED as u8, "page-failed"),
    (abi::KVM_PFI_CMD_DETECTION as u8, "detection"),
    (abi::KVM_PFI_CMD_WRITE_ATTEMPT as u8, "write-attempt"),
    (abi::KVM_PFI_CMD_SIGS_LOADED as u8, "sigs-loaded"),
    (abi::KVM_PFI_CMD_PROCESS_START as u8, "process-start"),
    (abi::KVM_PFI_CMD_PROCESS_EXIT as u8, "process-exit"),
];

pub fn command_name(cmd: u8) -> String {
    COMMANDS
        .iter()
        .find(|(c, _)| *c == cmd)
        .map(|(_, n)| (*n).to_string())
        .unwrap_or_else(|| format!("cmd_{cmd}"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Uint(u64),
    Bool(bool),
    Str(String),
    /// Raw bytes of an attribute this tool cannot decode, in hex.
    Hex(String),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Uint(v) => s.serialize_u64(*v),
            Value::Bool(v) => s.serialize_bool(*v),
            Value::Str(v) | Value::Hex(v) => s.serialize_str(v),
        }
    }
}

/// One decoded event, its attributes in the order the module sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub fields: Vec<(String, Value)>,
    /// CLOCK_REALTIME when we received it (the family carries no timestamp).
    pub time_ns: u64,
}

/// A line of `watch` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Event(Event),
    /// The socket's receive buffer overflowed: events were lost.
    Overrun,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A map in wire order: serde_json's own Map would sort the keys.
        let mut m = s.serialize_map(Some(self.fields.len() + 2))?;
        m.serialize_entry("event", &self.name)?;
        for (k, v) in &self.fields {
            m.serialize_entry(k, v)?;
        }
        m.serialize_entry("time_ns", &self.time_ns)?;
        m.end()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn json_key(name: &str) -> String {
    name.replace('-', "_")
}

/// Integers are in host order unless the attribute says network order.
fn uint(value: &[u8], net_order: bool) -> Option<u64> {
    Some(match (value.len(), net_order) {
        (4, false) => u32::from_ne_bytes(value.try_into().ok()?) as u64,
        (4, true) => u32::from_be_bytes(value.try_into().ok()?) as u64,
        (8, false) => u64::from_ne_bytes(value.try_into().ok()?),
        (8, true) => u64::from_be_bytes(value.try_into().ok()?),
        _ => return None,
    })
}

/// The name of `v` in an enum table (`HOWS`, ...), or the number itself if
/// the table does not know it (a value from a newer spec).
pub fn enum_value(names: &[(u32, &str)], v: u32) -> Value {
    match names.iter().find(|(n, _)| *n == v) {
        Some((_, name)) => Value::Str((*name).to_string()),
        None => Value::Uint(v as u64),
    }
}

/// The plain-text form of a decoded value (strings unquoted).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        other => pretty_value(other),
    }
}

/// Decodes one attribute with `desc`; None if the payload does not fit its
/// type (the caller then shows it raw) or if it carries nothing (pad).
fn decode_value(desc: &AttrDesc, nla: &NlaBuffer<&[u8]>) -> Option<Option<Value>> {
    let value = nla.value();
    let net = nla.network_byte_order_flag();
    Some(Some(match desc.kind {
        Kind::Pad => return Some(None),
        Kind::U32 if value.len() == 4 => Value::Uint(uint(value, net)?),
        // YNL's u64s are 8 bytes; accept 4 too, like its "uint" type.
        Kind::U64 => Value::Uint(uint(value, net)?),
        Kind::String => {
            let s = value.split(|&b| b == 0).next().unwrap_or(&[]);
            Value::Str(String::from_utf8_lossy(s).into_owned())
        }
        Kind::Enum(names) if value.len() == 4 => enum_value(names, uint(value, net)? as u32),
        Kind::Binary => Value::Hex(hex(value)),
        Kind::U32 | Kind::Enum(_) => return None,
    }))
}

/// Decodes a "kvm_pfi" message: generic netlink command `cmd`, attributes
/// `attrs` (the bytes after the genl header). Never fails: what cannot be
/// decoded is shown raw.
pub fn decode_event(cmd: u8, attrs: &[u8], time_ns: u64) -> Event {
    let mut fields = Vec::new();
    for nla in NlasIterator::new(attrs) {
        let nla = match nla {
            Ok(nla) => nla,
            Err(_) => {
                // A truncated attribute: nothing after it can be trusted.
                fields.push(("malformed".to_string(), Value::Bool(true)));
                break;
            }
        };
        let kind = nla.kind();
        let desc = EVENT_ATTRS.iter().find(|d| d.id == kind);
        match desc.map(|d| (d, decode_value(d, &nla))) {
            Some((_, Some(None))) => {}
            Some((d, Some(Some(v)))) => fields.push((json_key(d.name), v)),
            _ => fields.push((format!("attr_{kind}"), Value::Hex(hex(nla.value())))),
        }
    }
    Event {
        name: command_name(cmd),
        fields,
        time_ns,
    }
}

/// What `snapshot` keeps of a page-resident event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageResident {
    pub vm_id: u32,
    pub target_id: u32,
    pub cr3: u64,
    pub gva: u64,
    pub gpa: u64,
    /// The `how` enum's name (or number); None if the event had none.
    pub how: Option<Value>,
    /// The page contents, for targets with KVM_PFI_TARGET_READ.
    pub data: Option<Vec<u8>>,
}

/// The attributes of a page-resident event, decoded with the same table
/// as `watch`; None if vm-id, target-id or gva is missing or malformed.
pub fn page_resident(attrs: &[u8]) -> Option<PageResident> {
    let (mut vm_id, mut target_id, mut gva) = (None, None, None);
    let mut p = PageResident {
        vm_id: 0,
        target_id: 0,
        cr3: 0,
        gva: 0,
        gpa: 0,
        how: None,
        data: None,
    };
    for nla in NlasIterator::new(attrs) {
        let nla = nla.ok()?;
        let kind = nla.kind();
        if kind == abi::KVM_PFI_A_EVENT_DATA as u16 {
            p.data = Some(nla.value().to_vec());
            continue;
        }
        let Some(desc) = EVENT_ATTRS.iter().find(|d| d.id == kind) else {
            continue;
        };
        let value = decode_value(desc, &nla).flatten();
        let num = match &value {
            Some(Value::Uint(n)) => Some(*n),
            _ => None,
        };
        match desc.name {
            "vm-id" => vm_id = num.and_then(|n| u32::try_from(n).ok()),
            "target-id" => target_id = num.and_then(|n| u32::try_from(n).ok()),
            "gva" => gva = num,
            "cr3" => p.cr3 = num.unwrap_or(0),
            "gpa" => p.gpa = num.unwrap_or(0),
            "how" => p.how = value,
            _ => {}
        }
    }
    p.vm_id = vm_id?;
    p.target_id = target_id?;
    p.gva = gva?;
    Some(p)
}

/// `--pretty`'s UTC timestamp, RFC 3339 with nanoseconds.
pub fn format_time(time_ns: u64) -> String {
    let secs = time_ns / 1_000_000_000;
    let nanos = time_ns % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days: days since 1970-01-01 to y-m-d.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn pretty_value(v: &Value) -> String {
    match v {
        Value::Uint(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        // Quoted so that spaces or '=' in a name cannot break the line apart.
        Value::Str(s) => format!("{s:?}"),
        // Page contents would flood a terminal: the first 32 bytes and the size.
        Value::Hex(h) if h.len() > 64 => format!("0x{}... ({} bytes)", &h[..64], h.len() / 2),
        Value::Hex(h) => format!("0x{h}"),
    }
}

/// One line of `watch` output, without the newline.
pub fn render(record: &Record, pretty: bool, now_ns: u64) -> String {
    match (record, pretty) {
        (Record::Overrun, false) => r#"{"event":"overrun"}"#.to_string(),
        (Record::Overrun, true) => format!("{} overrun: events were lost", format_time(now_ns)),
        (Record::Event(e), false) => {
            serde_json::to_string(e).expect("maps of strings and integers serialize")
        }
        (Record::Event(e), true) => {
            let mut line = format!("{} {}", format_time(e.time_ns), e.name);
            let mut fields = Fields::new(e);
            let said = match e.name.as_str() {
                "detection" => detection_text(&mut fields),
                "write-attempt" => write_attempt_text(&mut fields),
                "sigs-loaded" => sigs_loaded_text(&mut fields),
                "process-start" => process_text(&mut fields, true),
                "process-exit" => process_text(&mut fields, false),
                _ => String::new(),
            };
            if !said.is_empty() {
                line.push(' ');
                line.push_str(&said);
            }
            // Whatever the sentence did not use, as key=value.
            for (k, v) in fields.rest() {
                let _ = write!(line, " {k}={}", pretty_value(v));
            }
            line
        }
    }
}

/// The fields of an event for a `--pretty` sentence: taking one marks it
/// used; the others are printed after the sentence as key=value.
struct Fields<'a> {
    event: &'a Event,
    used: Vec<bool>,
}

impl<'a> Fields<'a> {
    fn new(event: &'a Event) -> Self {
        Fields {
            event,
            used: vec![false; event.fields.len()],
        }
    }

    fn take(&mut self, key: &str) -> Option<&'a Value> {
        let i = self.event.fields.iter().position(|(k, _)| k == key)?;
        self.used[i] = true;
        Some(&self.event.fields[i].1)
    }

    fn uint(&mut self, key: &str) -> Option<u64> {
        match self.take(key) {
            Some(Value::Uint(n)) => Some(*n),
            _ => None,
        }
    }

    /// A number in decimal, "?" if absent.
    fn dec(&mut self, key: &str) -> String {
        self.uint(key).map_or_else(|| "?".into(), |n| n.to_string())
    }

    /// An address or offset in 0x hex, "?" if absent.
    fn hex(&mut self, key: &str) -> String {
        self.uint(key)
            .map_or_else(|| "?".into(), |n| format!("{n:#x}"))
    }

    fn rest(&self) -> impl Iterator<Item = &'a (String, Value)> + '_ {
        self.event
            .fields
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| !**used)
            .map(|(f, _)| f)
    }
}

/// "vm 3 target 5 gva 0x... (offset 0x10, 8 bytes) gpa 0x..."
fn where_text(f: &mut Fields<'_>) -> String {
    format!(
        "vm {} target {} gva {} (offset {}, {} bytes) gpa {} cr3 {}",
        f.dec("vm_id"),
        f.dec("target_id"),
        f.hex("gva"),
        f.hex("offset"),
        f.dec("length"),
        f.hex("gpa"),
        f.hex("cr3")
    )
}

/// `rule "NAME" vm 3 target 5 gva ... : page brought in by injection (1 #PF)`
fn detection_text(f: &mut Fields<'_>) -> String {
    let rule = match f.take("rule_name") {
        Some(v) => pretty_value(v),
        None => "?".into(),
    };
    let place = where_text(f);
    let injections = f.uint("injections");
    let origin = match f.take("how") {
        Some(Value::Str(h)) if h == "injected" => format!(
            "page brought in by injection ({} #PF{})",
            injections.map_or_else(|| "?".into(), |n| n.to_string()),
            if injections == Some(1) { "" } else { "s" }
        ),
        Some(Value::Str(h)) if h == "already-resident" => "page was already resident".into(),
        Some(Value::Str(h)) if h == "guest" => "page brought in by the guest".into(),
        Some(Value::Str(h)) if h == "injected-file" => format!(
            "page read back from its file by injection ({} #PF{})",
            injections.map_or_else(|| "?".into(), |n| n.to_string()),
            if injections == Some(1) { "" } else { "s" }
        ),
        Some(other) => format!("how={}", pretty_value(other)),
        None => "how=?".into(),
    };
    format!(
        "rule {rule} {place}: {origin}; set generation {} rule {}",
        f.dec("generation"),
        f.dec("rule_id")
    )
}

/// `vm 3 target 5 gva ... (offset 0x10, 4 bytes) ...: restored, data 0x...`
fn write_attempt_text(f: &mut Fields<'_>) -> String {
    let place = where_text(f);
    let outcome = match f.uint("restored") {
        Some(0) => "not restored".to_string(),
        Some(1) => "old bytes restored".to_string(),
        Some(n) => format!("restored={n}"),
        None => "restored=?".to_string(),
    };
    let data = f.take("data").map_or_else(|| "?".into(), pretty_value);
    format!("{place}: {outcome}, wrote {data}")
}

/// `generation 7: 3 rules active` or `generation 8: no signature set (cleared)`
fn sigs_loaded_text(f: &mut Fields<'_>) -> String {
    let generation = f.dec("generation");
    match f.uint("nr_rules") {
        Some(0) => format!("generation {generation}: no signature set (cleared)"),
        Some(1) => format!("generation {generation}: 1 rule active"),
        Some(n) => format!("generation {generation}: {n} rules active"),
        None => format!("generation {generation}: ? rules"),
    }
}

/// `vm 1 pid 42 "bash" started by pid 1: /usr/bin/bash (cr3 0x..., task
/// 0x..., flags 0x...)`, `vm 1 pid 42 "bash" exited (cr3 0x..., task 0x...)`;
/// cr3 0 is a kernel thread.
fn process_text(f: &mut Fields<'_>, start: bool) -> String {
    let head = format!(
        "vm {} pid {} {}",
        f.dec("vm_id"),
        f.dec("pid"),
        f.take("comm").map_or_else(|| "?".into(), pretty_value)
    );
    let cr3 = f.uint("cr3");
    let space = match cr3 {
        Some(0) => "kernel thread".to_string(),
        Some(c) => format!("cr3 {c:#x}"),
        None => "cr3 ?".to_string(),
    };
    let task = f.hex("task");
    if !start {
        return format!("{head} exited ({space}, task {task})");
    }
    let parent = f.dec("ppid");
    let what = match (f.take("exe"), cr3) {
        (Some(Value::Str(e)), _) if !e.is_empty() => format!("{e:?}"),
        (_, Some(0)) => "kernel thread".to_string(),
        _ => "executable unknown".to_string(),
    };
    let flags = f.hex("task_flags");
    let details = if cr3 == Some(0) {
        format!("task {task}, flags {flags}")
    } else {
        format!("{space}, task {task}, flags {flags}")
    };
    format!("{head} started by pid {parent}: {what} ({details})")
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use netlink_packet_core::NLA_F_NET_BYTEORDER;

    /// Builds one attribute the way the kernel's nla_put() does.
    pub fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let len = 4 + value.len();
        let mut b = Vec::new();
        b.extend_from_slice(&(len as u16).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(value);
        b.resize(len.next_multiple_of(4), 0);
        b
    }

    pub fn attached_attrs() -> Vec<u8> {
        [
            nla(abi::KVM_PFI_A_EVENT_VM_ID as u16, &1u32.to_ne_bytes()),
            nla(abi::KVM_PFI_A_EVENT_VMM_PID as u16, &123u32.to_ne_bytes()),
            nla(abi::KVM_PFI_A_EVENT_STATS_ID as u16, b"kvm-123\0"),
            nla(
                abi::KVM_PFI_A_EVENT_ATTACH_FLAGS as u16,
                &0u32.to_ne_bytes(),
            ),
        ]
        .concat()
    }

    #[test]
    fn attached_event_json_matches_documented_shape() {
        let e = decode_event(
            abi::KVM_PFI_CMD_VM_ATTACHED as u8,
            &attached_attrs(),
            1_700_000_000_123_456_789,
        );
        assert_eq!(
            render(&Record::Event(e), false, 0),
            r#"{"event":"vm-attached","vm_id":1,"vmm_pid":123,"stats_id":"kvm-123","attach_flags":0,"time_ns":1700000000123456789}"#
        );
    }

    #[test]
    fn detached_event_with_enum_and_u64s() {
        let attrs = [
            nla(abi::KVM_PFI_A_EVENT_VM_ID as u16, &7u32.to_ne_bytes()),
            nla(
                abi::KVM_PFI_A_EVENT_DETACH_REASON as u16,
                &abi::KVM_PFI_DETACH_REASON_VM_EXITED.to_ne_bytes(),
            ),
            nla(
                abi::KVM_PFI_A_EVENT_ENTRIES as u16,
                &(u64::MAX - 1).to_ne_bytes(),
            ),
            nla(abi::KVM_PFI_A_EVENT_EXITS as u16, &5u64.to_ne_bytes()),
        ]
        .concat();
        let e = decode_event(abi::KVM_PFI_CMD_VM_DETACHED as u8, &attrs, 5);
        let v: serde_json::Value =
            serde_json::from_str(&render(&Record::Event(e), false, 0)).unwrap();
        assert_eq!(v["event"], "vm-detached");
        assert_eq!(v["vm_id"], 7);
        assert_eq!(v["detach_reason"], "vm-exited");
        assert_eq!(v["entries"], u64::MAX - 1);
        assert_eq!(v["exits"], 5);
        assert_eq!(v["time_ns"], 5);
    }

    /// The module aligns u64s with nla_put_64bit(), which may insert `pad`
    /// attributes (empty, or 4 bytes); they must not show up in the output.
    #[cfg(kvm_pfi_has_pad_attr)]
    #[test]
    fn pad_attributes_are_skipped() {
        let pad = abi::KVM_PFI_A_EVENT_PAD as u16;
        let attrs = [
            nla(abi::KVM_PFI_A_EVENT_VM_ID as u16, &2u32.to_ne_bytes()),
            nla(pad, &[]),
            nla(abi::KVM_PFI_A_EVENT_ENTRIES as u16, &10u64.to_ne_bytes()),
            nla(pad, &[0; 4]),
            nla(abi::KVM_PFI_A_EVENT_EXITS as u16, &9u64.to_ne_bytes()),
        ]
        .concat();
        let e = decode_event(abi::KVM_PFI_CMD_VM_DETACHED as u8, &attrs, 3);
        assert_eq!(
            render(&Record::Event(e), false, 0),
            r#"{"event":"vm-detached","vm_id":2,"entries":10,"exits":9,"time_ns":3}"#
        );
    }

    #[test]
    fn every_detach_reason_has_its_yaml_name() {
        let names: Vec<&str> = DETACH_REASONS.iter().map(|(_, n)| *n).collect();
        assert_eq!(names, ["requested", "file-closed", "vm-exited", "unload"]);
        for (value, name) in DETACH_REASONS {
            let attrs = nla(
                abi::KVM_PFI_A_EVENT_DETACH_REASON as u16,
                &value.to_ne_bytes(),
            );
            let e = decode_event(abi::KVM_PFI_CMD_VM_DETACHED as u8, &attrs, 0);
            assert_eq!(
                e.fields,
                vec![("detach_reason".to_string(), Value::Str(name.to_string()))]
            );
        }
    }

    #[test]
    fn unknown_things_are_shown_not_fatal() {
        let attrs = [
            nla(abi::KVM_PFI_A_EVENT_VM_ID as u16, &3u32.to_ne_bytes()),
            nla(200, &[0xde, 0xad, 0xbe, 0xef, 0x01]),
            // A known u32 with the wrong size is shown raw as well.
            nla(abi::KVM_PFI_A_EVENT_VMM_PID as u16, &[1, 2]),
            // A detach reason from a newer spec keeps its number.
            nla(
                abi::KVM_PFI_A_EVENT_DETACH_REASON as u16,
                &42u32.to_ne_bytes(),
            ),
        ]
        .concat();
        let e = decode_event(99, &attrs, 1);
        let pid_key = format!("attr_{}", abi::KVM_PFI_A_EVENT_VMM_PID);
        assert_eq!(
            e,
            Event {
                name: "cmd_99".into(),
                fields: vec![
                    ("vm_id".into(), Value::Uint(3)),
                    ("attr_200".into(), Value::Hex("deadbeef01".into())),
                    (pid_key.clone(), Value::Hex("0102".into())),
                    ("detach_reason".into(), Value::Uint(42)),
                ],
                time_ns: 1,
            }
        );
        let json = render(&Record::Event(e), false, 0);
        assert_eq!(
            json,
            format!(
                r#"{{"event":"cmd_99","vm_id":3,"attr_200":"deadbeef01","{pid_key}":"0102","detach_reason":42,"time_ns":1}}"#
            )
        );
    }

    #[test]
    fn truncated_attribute_is_flagged() {
        let mut attrs = nla(abi::KVM_PFI_A_EVENT_VM_ID as u16, &3u32.to_ne_bytes());
        attrs.extend_from_slice(&[40, 0, 1, 0, 9]); // claims 40 bytes, has 5
        let e = decode_event(abi::KVM_PFI_CMD_VM_ATTACHED as u8, &attrs, 0);
        assert_eq!(e.fields.len(), 2);
        assert_eq!(e.fields[1], ("malformed".to_string(), Value::Bool(true)));
    }

    #[test]
    fn network_byte_order_flag_is_honoured() {
        let attrs = nla(
            abi::KVM_PFI_A_EVENT_VM_ID as u16 | NLA_F_NET_BYTEORDER,
            &9u32.to_be_bytes(),
        );
        let e = decode_event(abi::KVM_PFI_CMD_VM_ATTACHED as u8, &attrs, 0);
        assert_eq!(e.fields, vec![("vm_id".to_string(), Value::Uint(9))]);
    }

    #[test]
    fn pretty_line() {
        let e = decode_event(
            abi::KVM_PFI_CMD_VM_ATTACHED as u8,
            &attached_attrs(),
            1_700_000_000_123_456_789,
        );
        assert_eq!(
            render(&Record::Event(e), true, 0),
            r#"2023-11-14T22:13:20.123456789Z vm-attached vm_id=1 vmm_pid=123 stats_id="kvm-123" attach_flags=0"#
        );
        assert_eq!(
            render(&Record::Overrun, true, 0),
            "1970-01-01T00:00:00.000000000Z overrun: events were lost"
        );
        assert_eq!(render(&Record::Overrun, false, 0), r#"{"event":"overrun"}"#);
    }

    #[test]
    fn pretty_page_contents_are_shortened() {
        let page = vec![0x5au8; 4096];
        let e = decode_event(
            abi::KVM_PFI_CMD_PAGE_RESIDENT as u8,
            &[nla(abi::KVM_PFI_A_EVENT_DATA as u16, &page)].concat(),
            0,
        );
        let line = render(&Record::Event(e.clone()), true, 0);
        assert!(
            line.ends_with(&format!("data=0x{}... (4096 bytes)", "5a".repeat(32))),
            "{line}"
        );
        // JSON keeps every byte.
        let v: serde_json::Value =
            serde_json::from_str(&render(&Record::Event(e), false, 0)).unwrap();
        assert_eq!(v["data"].as_str().unwrap().len(), 8192);
    }

    #[test]
    fn time_formatting() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29 (leap day) 12:34:56.000000001
        assert_eq!(
            format_time(951_827_696_000_000_001),
            "2000-02-29T12:34:56.000000001Z"
        );
        assert_eq!(
            format_time(4_102_444_799_000_000_000),
            "2099-12-31T23:59:59.000000000Z"
        );
    }

    fn u32_attr(id: u32, v: u32) -> Vec<u8> {
        nla(id as u16, &v.to_ne_bytes())
    }

    fn u64_attr(id: u32, v: u64) -> Vec<u8> {
        nla(id as u16, &v.to_ne_bytes())
    }

    /// A detection as the module sends it (attribute order of the spec).
    pub fn detection_attrs(how: u32, injections: u32) -> Vec<u8> {
        [
            u32_attr(abi::KVM_PFI_A_EVENT_VM_ID, 3),
            u32_attr(abi::KVM_PFI_A_EVENT_TARGET_ID, 5),
            u64_attr(abi::KVM_PFI_A_EVENT_CR3, 0x1234000),
            u64_attr(abi::KVM_PFI_A_EVENT_GVA, 0x7f00_0000_1234),
            u64_attr(abi::KVM_PFI_A_EVENT_GPA, 0x0567_8234),
            u32_attr(abi::KVM_PFI_A_EVENT_OFFSET, 0x234),
            u32_attr(abi::KVM_PFI_A_EVENT_LENGTH, 16),
            u32_attr(abi::KVM_PFI_A_EVENT_RULE_ID, 2),
            nla(abi::KVM_PFI_A_EVENT_RULE_NAME as u16, b"Evil_Marker\0"),
            u32_attr(abi::KVM_PFI_A_EVENT_GENERATION, 7),
            u32_attr(abi::KVM_PFI_A_EVENT_HOW, how),
            u32_attr(abi::KVM_PFI_A_EVENT_INJECTIONS, injections),
        ]
        .concat()
    }

    #[test]
    fn detection_event_json_and_pretty() {
        let e = decode_event(
            abi::KVM_PFI_CMD_DETECTION as u8,
            &detection_attrs(abi::KVM_PFI_HOW_INJECTED, 2),
            1_700_000_000_000_000_000,
        );
        assert_eq!(
            render(&Record::Event(e.clone()), false, 0),
            concat!(
                r#"{"event":"detection","vm_id":3,"target_id":5,"cr3":19087360,"#,
                r#""gva":139637976732212,"gpa":90669620,"offset":564,"length":16,"#,
                r#""rule_id":2,"rule_name":"Evil_Marker","generation":7,"#,
                r#""how":"injected","injections":2,"time_ns":1700000000000000000}"#
            )
        );
        assert_eq!(
            render(&Record::Event(e), true, 0),
            concat!(
                r#"2023-11-14T22:13:20.000000000Z detection rule "Evil_Marker" "#,
                "vm 3 target 5 gva 0x7f0000001234 (offset 0x234, 16 bytes) ",
                "gpa 0x5678234 cr3 0x1234000: page brought in by injection (2 #PFs); ",
                "set generation 7 rule 2"
            )
        );
        let line = |how, injections| {
            let e = decode_event(
                abi::KVM_PFI_CMD_DETECTION as u8,
                &detection_attrs(how, injections),
                0,
            );
            render(&Record::Event(e), true, 0)
        };
        assert!(
            line(abi::KVM_PFI_HOW_INJECTED, 1).contains(": page brought in by injection (1 #PF);")
        );
        assert!(line(abi::KVM_PFI_HOW_ALREADY_RESIDENT, 0).contains(": page was already resident;"));
        assert!(line(abi::KVM_PFI_HOW_GUEST, 0).contains(": page brought in by the guest;"));
        assert!(line(abi::KVM_PFI_HOW_INJECTED_FILE, 1)
            .contains(": page read back from its file by injection (1 #PF);"));
        assert!(line(9, 0).contains(": how=9;"));
    }

    #[test]
    fn write_attempt_event_json_and_pretty() {
        let attrs = [
            u32_attr(abi::KVM_PFI_A_EVENT_VM_ID, 1),
            u32_attr(abi::KVM_PFI_A_EVENT_TARGET_ID, 4),
            u64_attr(abi::KVM_PFI_A_EVENT_CR3, 0x2000),
            u64_attr(abi::KVM_PFI_A_EVENT_GVA, 0x401010),
            u64_attr(abi::KVM_PFI_A_EVENT_GPA, 0x9010),
            u32_attr(abi::KVM_PFI_A_EVENT_OFFSET, 0x10),
            u32_attr(abi::KVM_PFI_A_EVENT_LENGTH, 4),
            u32_attr(abi::KVM_PFI_A_EVENT_RESTORED, 1),
            nla(abi::KVM_PFI_A_EVENT_DATA as u16, &[0xde, 0xad, 0xbe, 0xef]),
        ]
        .concat();
        let e = decode_event(abi::KVM_PFI_CMD_WRITE_ATTEMPT as u8, &attrs, 9);
        assert_eq!(
            render(&Record::Event(e.clone()), false, 0),
            concat!(
                r#"{"event":"write-attempt","vm_id":1,"target_id":4,"cr3":8192,"#,
                r#""gva":4198416,"gpa":36880,"offset":16,"length":4,"restored":1,"#,
                r#""data":"deadbeef","time_ns":9}"#
            )
        );
        assert_eq!(
            render(&Record::Event(e), true, 0),
            concat!(
                "1970-01-01T00:00:00.000000009Z write-attempt vm 1 target 4 gva 0x401010 ",
                "(offset 0x10, 4 bytes) gpa 0x9010 cr3 0x2000: old bytes restored, wrote 0xdeadbeef"
            )
        );
        // A PROTECT-only target: the write stays; long writes are shortened.
        let attrs = [
            u32_attr(abi::KVM_PFI_A_EVENT_VM_ID, 1),
            u32_attr(abi::KVM_PFI_A_EVENT_RESTORED, 0),
            nla(abi::KVM_PFI_A_EVENT_DATA as u16, &[0x41; 100]),
        ]
        .concat();
        let e = decode_event(abi::KVM_PFI_CMD_WRITE_ATTEMPT as u8, &attrs, 0);
        let line = render(&Record::Event(e), true, 0);
        assert!(
            line.ends_with(&format!(
                "vm 1 target ? gva ? (offset ?, ? bytes) gpa ? cr3 ?: not restored, wrote 0x{}... (100 bytes)",
                "41".repeat(32)
            )),
            "{line}"
        );
    }

    #[test]
    fn sigs_loaded_event_json_and_pretty() {
        let attrs = |gen, rules| {
            [
                u32_attr(abi::KVM_PFI_A_EVENT_GENERATION, gen),
                u32_attr(abi::KVM_PFI_A_EVENT_NR_RULES, rules),
            ]
            .concat()
        };
        let e = decode_event(abi::KVM_PFI_CMD_SIGS_LOADED as u8, &attrs(7, 3), 1);
        assert_eq!(
            render(&Record::Event(e.clone()), false, 0),
            r#"{"event":"sigs-loaded","generation":7,"nr_rules":3,"time_ns":1}"#
        );
        assert_eq!(
            render(&Record::Event(e), true, 0),
            "1970-01-01T00:00:00.000000001Z sigs-loaded generation 7: 3 rules active"
        );
        let e = decode_event(abi::KVM_PFI_CMD_SIGS_LOADED as u8, &attrs(8, 0), 1);
        assert!(render(&Record::Event(e), true, 0)
            .ends_with("generation 8: no signature set (cleared)"));
        let e = decode_event(abi::KVM_PFI_CMD_SIGS_LOADED as u8, &attrs(9, 1), 1);
        assert!(render(&Record::Event(e), true, 0).ends_with("generation 9: 1 rule active"));
    }

    /// A process-start as rust/netlink.rs sends it (attribute order of the
    /// spec): `exe` is the path that follows the stream record, as a string.
    pub fn process_start_attrs(cr3: u64, exe: &[u8]) -> Vec<u8> {
        let mut exe = exe.to_vec();
        exe.push(0);
        [
            u32_attr(abi::KVM_PFI_A_EVENT_VM_ID, 2),
            u32_attr(abi::KVM_PFI_A_EVENT_PID, 412),
            u32_attr(abi::KVM_PFI_A_EVENT_PPID, 1),
            nla(abi::KVM_PFI_A_EVENT_COMM as u16, b"bash\0"),
            u64_attr(abi::KVM_PFI_A_EVENT_CR3, cr3),
            u64_attr(abi::KVM_PFI_A_EVENT_TASK, 0xffff_8880_0412_0000),
            u32_attr(abi::KVM_PFI_A_EVENT_TASK_FLAGS, 0x40_0100),
            nla(abi::KVM_PFI_A_EVENT_EXE as u16, &exe),
        ]
        .concat()
    }

    pub fn process_exit_attrs(cr3: u64) -> Vec<u8> {
        [
            u32_attr(abi::KVM_PFI_A_EVENT_VM_ID, 2),
            u32_attr(abi::KVM_PFI_A_EVENT_PID, 412),
            nla(abi::KVM_PFI_A_EVENT_COMM as u16, b"bash\0"),
            u64_attr(abi::KVM_PFI_A_EVENT_CR3, cr3),
            u64_attr(abi::KVM_PFI_A_EVENT_TASK, 0xffff_8880_0412_0000),
        ]
        .concat()
    }

    #[test]
    fn process_start_event_json_and_pretty() {
        let e = decode_event(
            abi::KVM_PFI_CMD_PROCESS_START as u8,
            &process_start_attrs(0x1234000, b"/usr/bin/bash"),
            7,
        );
        assert_eq!(
            render(&Record::Event(e.clone()), false, 0),
            concat!(
                r#"{"event":"process-start","vm_id":2,"pid":412,"ppid":1,"comm":"bash","#,
                r#""cr3":19087360,"task":18446612682138320896,"task_flags":4194560,"#,
                r#""exe":"/usr/bin/bash","time_ns":7}"#
            )
        );
        assert_eq!(
            render(&Record::Event(e), true, 0),
            concat!(
                r#"1970-01-01T00:00:00.000000007Z process-start vm 2 pid 412 "bash" "#,
                r#"started by pid 1: "/usr/bin/bash" (cr3 0x1234000, "#,
                "task 0xffff888004120000, flags 0x400100)"
            )
        );
        // A kernel thread: cr3 0, no path.
        let e = decode_event(
            abi::KVM_PFI_CMD_PROCESS_START as u8,
            &process_start_attrs(0, b""),
            7,
        );
        let v: serde_json::Value =
            serde_json::from_str(&render(&Record::Event(e.clone()), false, 0)).unwrap();
        assert_eq!((v["cr3"].as_u64(), v["exe"].as_str()), (Some(0), Some("")));
        let line = render(&Record::Event(e), true, 0);
        assert!(
            line.ends_with(
                "started by pid 1: kernel thread (task 0xffff888004120000, flags 0x400100)"
            ),
            "{line}"
        );
        // A user process whose path could not be read.
        let e = decode_event(
            abi::KVM_PFI_CMD_PROCESS_START as u8,
            &process_start_attrs(0x5000, b""),
            7,
        );
        assert!(render(&Record::Event(e), true, 0)
            .contains("started by pid 1: executable unknown (cr3 0x5000, "));
        // The longest path the module sends (KVM_PFI_EXE_LEN - 1 bytes).
        let long = vec![b'a'; abi::KVM_PFI_EXE_LEN as usize - 1];
        let e = decode_event(
            abi::KVM_PFI_CMD_PROCESS_START as u8,
            &process_start_attrs(0x5000, &long),
            7,
        );
        let v: serde_json::Value =
            serde_json::from_str(&render(&Record::Event(e), false, 0)).unwrap();
        assert_eq!(v["exe"].as_str().unwrap().len(), long.len());
    }

    #[test]
    fn process_exit_event_json_and_pretty() {
        let e = decode_event(
            abi::KVM_PFI_CMD_PROCESS_EXIT as u8,
            &process_exit_attrs(0x1234000),
            8,
        );
        assert_eq!(
            render(&Record::Event(e.clone()), false, 0),
            concat!(
                r#"{"event":"process-exit","vm_id":2,"pid":412,"comm":"bash","#,
                r#""cr3":19087360,"task":18446612682138320896,"time_ns":8}"#
            )
        );
        assert_eq!(
            render(&Record::Event(e), true, 0),
            concat!(
                r#"1970-01-01T00:00:00.000000008Z process-exit vm 2 pid 412 "bash" "#,
                "exited (cr3 0x1234000, task 0xffff888004120000)"
            )
        );
        let mut attrs = process_exit_attrs(0);
        attrs.extend(u32_attr(abi::KVM_PFI_A_EVENT_LOST, 3));
        let e = decode_event(abi::KVM_PFI_CMD_PROCESS_EXIT as u8, &attrs, 8);
        let line = render(&Record::Event(e), true, 0);
        assert!(
            line.ends_with("exited (kernel thread, task 0xffff888004120000) lost=3"),
            "{line}"
        );
    }

    /// Attributes the sentence does not use are still shown.
    #[test]
    fn pretty_sentence_keeps_extra_attributes() {
        let mut attrs = detection_attrs(abi::KVM_PFI_HOW_GUEST, 0);
        attrs.extend(nla(200, &[1, 2]));
        attrs.extend(u32_attr(abi::KVM_PFI_A_EVENT_PAGE_SIZE, 4096));
        let e = decode_event(abi::KVM_PFI_CMD_DETECTION as u8, &attrs, 0);
        let line = render(&Record::Event(e), true, 0);
        assert!(
            line.ends_with("rule 2 attr_200=0x0102 page_size=4096"),
            "{line}"
        );
    }

    #[test]
    fn page_resident_for_snapshot() {
        let page: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let attrs = [
            u32_attr(abi::KVM_PFI_A_EVENT_VM_ID, 3),
            u32_attr(abi::KVM_PFI_A_EVENT_TARGET_ID, 5),
            u64_attr(abi::KVM_PFI_A_EVENT_CR3, 0x1234000),
            u64_attr(abi::KVM_PFI_A_EVENT_GVA, 0x7f00_0000_1000),
            u64_attr(abi::KVM_PFI_A_EVENT_GPA, 0x5678000),
            u32_attr(abi::KVM_PFI_A_EVENT_PAGE_SIZE, 4096),
            u32_attr(abi::KVM_PFI_A_EVENT_HOW, abi::KVM_PFI_HOW_INJECTED),
            u32_attr(abi::KVM_PFI_A_EVENT_INJECTIONS, 1),
            u32_attr(abi::KVM_PFI_A_EVENT_REINJECTIONS, 0),
            nla(abi::KVM_PFI_A_EVENT_DATA as u16, &page),
        ]
        .concat();
        let p = page_resident(&attrs).unwrap();
        assert_eq!(
            p,
            PageResident {
                vm_id: 3,
                target_id: 5,
                cr3: 0x1234000,
                gva: 0x7f00_0000_1000,
                gpa: 0x5678000,
                how: Some(Value::Str("injected".into())),
                data: Some(page),
            }
        );
        // Without --read: no data. Without the ids: not usable.
        let no_data = [
            u32_attr(abi::KVM_PFI_A_EVENT_VM_ID, 3),
            u32_attr(abi::KVM_PFI_A_EVENT_TARGET_ID, 5),
            u64_attr(abi::KVM_PFI_A_EVENT_GVA, 0x1000),
        ]
        .concat();
        assert_eq!(page_resident(&no_data).unwrap().data, None);
        assert_eq!(page_resident(&no_data).unwrap().how, None);
        assert_eq!(page_resident(&no_data[..no_data.len() - 12]), None);
    }

    /// Fails when the regenerated header has attributes or commands this
    /// tool's tables do not name yet: add them above (names from the YAML).
    #[test]
    fn tables_cover_the_header() {
        for id in 1..=abi::KVM_PFI_A_EVENT_MAX as u16 {
            assert!(
                EVENT_ATTRS.iter().any(|d| d.id == id),
                "attribute {id} of the header has no entry in EVENT_ATTRS"
            );
        }
        for cmd in 1..=abi::KVM_PFI_CMD_MAX as u8 {
            assert!(
                COMMANDS.iter().any(|(c, _)| *c == cmd),
                "command {cmd} of the header has no entry in COMMANDS"
            );
        }
        let mut ids: Vec<u16> = EVENT_ATTRS.iter().map(|d| d.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), EVENT_ATTRS.len(), "duplicate attribute ids");
    }
}
