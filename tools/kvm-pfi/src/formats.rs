// SPDX-License-Identifier: GPL-2.0
//! `watch --format`: the same decoded records as JSON lines (`json`), as
//! native journal entries (`journald`), as RFC 5424 syslog messages with
//! structured data (`syslog`), or as OCSF events (`ocsf`).
//!
//! Transports and wire formats come from crates: the journal's native
//! protocol from `libsystemd` (it also passes large entries in a sealed
//! memfd), RFC 5424 framing, escaping and the socket/TCP senders from
//! `fasyslog`. What is ours is the mapping of each event to a severity, a
//! MESSAGE_ID, structured data and an OCSF class; it is documented in
//! Documentation/operations.rst and must stay in step with it.

use std::io::{self, BufRead, Write};
use std::path::Path;

use serde_json::{json, Map, Value as Json};

use crate::error::{Error, Result};
use crate::events::{render, Event, Record, Value};

/// What `watch --format` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line on stdout (the default)
    Json,
    /// Native journal entries to the local systemd-journald
    Journald,
    /// RFC 5424 messages with structured data to the syslog socket or a TCP target
    Syslog,
    /// OCSF 1.5.0 events, one JSON object per line on stdout
    Ocsf,
}

/// The OCSF schema version the `ocsf` output follows.
pub const OCSF_VERSION: &str = "1.5.0";

/// Syslog severities (RFC 5424 6.2.1), also the journal's PRIORITY.
pub mod severity {
    pub const CRIT: u8 = 2;
    pub const ERR: u8 = 3;
    pub const WARNING: u8 = 4;
    pub const NOTICE: u8 = 5;
    pub const INFO: u8 = 6;
}

/// Name of a record: the event name, or "overrun".
pub fn record_name(record: &Record) -> &str {
    match record {
        Record::Event(e) => &e.name,
        Record::Overrun => "overrun",
    }
}

/// Severity of each kind of record (Documentation/operations.rst).
pub fn severity_of(name: &str) -> u8 {
    match name {
        "detection" => severity::CRIT,
        "overrun" => severity::ERR,
        "write-attempt" | "page-failed" => severity::WARNING,
        "page-resident" | "target-added" | "target-removed" | "process-start" | "process-exit" => {
            severity::INFO
        }
        // vm-attached, vm-detached, sigs-loaded, and events of a newer module.
        _ => severity::NOTICE,
    }
}

/// MESSAGE_ID of each kind of record in the journal (fixed, random 128-bit
/// ids, like systemd's catalog); events this tool does not know share one.
pub const MESSAGE_IDS: &[(&str, &str)] = &[
    ("vm-attached", "1c3c195c1f174d2484c08c8903e8f0df"),
    ("vm-detached", "9b6c20c39ce444949d777d79c48b5bf8"),
    ("target-added", "83a9bd98cf624a8c824bb634a925a221"),
    ("target-removed", "3da27e97188747cb8d6c8e9b32bdace5"),
    ("page-resident", "baa5de74c3a3447daa36f6f1cdf46cc7"),
    ("page-failed", "55c969c749df4b6987655a7022f0d63a"),
    ("detection", "7b77cefd2b6748ac9bdb52c575ecb266"),
    ("write-attempt", "a6bcc16973904660b1d0fa783918e793"),
    ("sigs-loaded", "f4cacf1b802b4167a0d72112515cacae"),
    ("process-start", "f108108845b34b7f82acc26c1415c40c"),
    ("process-exit", "4d5cbfc81380478c9eb60462bb6351f9"),
    ("overrun", "55577e6f54c34372bdd8133ce78623d2"),
];
/// MESSAGE_ID of events of a newer module.
pub const UNKNOWN_MESSAGE_ID: &str = "d53e9a31e59f453d97abe5bfcbf4eacd";

pub fn message_id(name: &str) -> &'static str {
    MESSAGE_IDS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(UNKNOWN_MESSAGE_ID, |(_, id)| id)
}

/// The `--pretty` sentence without its timestamp: the MESSAGE / MSG text.
pub fn message_text(record: &Record, now_ns: u64) -> String {
    let line = render(record, true, now_ns);
    line.split_once(' ')
        .map_or(line.clone(), |(_, rest)| rest.to_string())
}

fn value_string(v: &Value) -> String {
    match v {
        Value::Uint(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Str(s) | Value::Hex(s) => s.clone(),
    }
}

/// Journal field name of an attribute key: KVM_PFI_ and the key in upper
/// case, anything but [A-Z0-9_] as '_' (journald's rule for field names).
pub fn journal_field(key: &str) -> String {
    let mut f = String::from("KVM_PFI_");
    f.extend(key.chars().map(|c| match c.to_ascii_uppercase() {
        c @ ('A'..='Z' | '0'..='9') => c,
        _ => '_',
    }));
    f
}

/// The fields of a journal entry for `record`, MESSAGE and PRIORITY aside.
pub fn journal_fields(record: &Record, now_ns: u64) -> Vec<(String, String)> {
    let name = record_name(record);
    let mut f = vec![
        ("MESSAGE_ID".to_string(), message_id(name).to_string()),
        ("SYSLOG_IDENTIFIER".to_string(), "kvm-pfi".to_string()),
        ("KVM_PFI_EVENT".to_string(), name.to_string()),
    ];
    let time_ns = match record {
        Record::Event(e) => {
            f.extend(
                e.fields
                    .iter()
                    .map(|(k, v)| (journal_field(k), value_string(v))),
            );
            e.time_ns
        }
        Record::Overrun => now_ns,
    };
    f.push(("KVM_PFI_TIME_NS".to_string(), time_ns.to_string()));
    f
}

/// SD-ID of the structured data. 32473 is the private enterprise number
/// RFC 5612 reserves for documentation: kvm-pfi has none of its own.
pub const SD_ID: &str = "kvmpfi@32473";
/// Byte strings longer than this (page contents) are left out of syslog
/// messages, whose receivers cut long messages (rsyslog: 8 KiB by default);
/// `data_bytes` then gives their length.
pub const SYSLOG_MAX_HEX: usize = 512;

/// MSG text: one line, whatever a rule name holds.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// RFC 5424 MSGID (at most 32 printable ASCII characters).
fn msgid(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect()
}

/// SD-PARAMs of `record`: the event name, every attribute, time_ns.
pub fn sd_params(record: &Record, now_ns: u64) -> Vec<(String, String)> {
    let mut p = vec![("event".to_string(), record_name(record).to_string())];
    let time_ns = match record {
        Record::Event(e) => {
            for (k, v) in &e.fields {
                match v {
                    Value::Hex(h) if h.len() > SYSLOG_MAX_HEX => {
                        p.push((format!("{k}_bytes"), (h.len() / 2).to_string()))
                    }
                    v => p.push((k.clone(), value_string(v))),
                }
            }
            e.time_ns
        }
        Record::Overrun => now_ns,
    };
    p.push(("time_ns".to_string(), time_ns.to_string()));
    p
}

fn fasyslog_severity(s: u8) -> fasyslog::Severity {
    use fasyslog::Severity as S;
    match s {
        0 => S::EMERGENCY,
        1 => S::ALERT,
        2 => S::CRITICAL,
        3 => S::ERROR,
        4 => S::WARNING,
        5 => S::NOTICE,
        6 => S::INFORMATIONAL,
        _ => S::DEBUG,
    }
}

/// Where `--format syslog` sends to.
#[derive(Debug, Clone)]
pub enum SyslogTarget {
    /// A local socket (datagram or stream), e.g. /dev/log.
    Unix(String),
    /// host:port, RFC 6587 non-transparent framing (LF).
    Tcp(String),
}

pub struct Syslog {
    target: SyslogTarget,
    sender: Option<fasyslog::sender::SyslogSender>,
    context: fasyslog::format::SyslogContext,
}

impl Syslog {
    pub fn connect(target: SyslogTarget) -> Result<Self> {
        let mut context = fasyslog::format::SyslogContext::new();
        context
            .appname("kvm-pfi")
            .facility(fasyslog::Facility::DAEMON);
        let mut s = Syslog {
            target,
            sender: None,
            context,
        };
        s.reconnect()?;
        Ok(s)
    }

    fn describe(&self) -> String {
        match &self.target {
            SyslogTarget::Unix(p) => format!("syslog socket {p}"),
            SyslogTarget::Tcp(a) => format!("syslog server {a}"),
        }
    }

    fn reconnect(&mut self) -> Result<()> {
        use fasyslog::sender::SyslogSender;
        let what = || format!("connect to {}", self.describe());
        let sender = match &self.target {
            SyslogTarget::Unix(p) => {
                let mut s = fasyslog::sender::unix(p).map_err(|e| Error::from_io(what(), e))?;
                match &mut s {
                    SyslogSender::UnixDatagram(d) => d.set_context(self.context.clone()),
                    SyslogSender::UnixStream(st) => {
                        st.set_context(self.context.clone());
                        st.set_postfix("\n");
                    }
                    _ => {}
                }
                s
            }
            SyslogTarget::Tcp(a) => {
                let mut t =
                    fasyslog::sender::tcp(a.as_str()).map_err(|e| Error::from_io(what(), e))?;
                t.set_postfix("\n");
                *t.mut_context() = self.context.clone();
                SyslogSender::Tcp(t)
            }
        };
        self.sender = Some(sender);
        Ok(())
    }

    fn send_once(&mut self, record: &Record, now_ns: u64) -> io::Result<()> {
        let name = record_name(record);
        let mut element = fasyslog::SDElement::new(SD_ID).expect("SD_ID is a valid SD-ID");
        for (k, v) in sd_params(record, now_ns) {
            // PARAM-NAMEs are our attribute names (ASCII, under 32 bytes).
            element
                .add_param(k, v)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        let sender = self.sender.as_mut().expect("connected");
        sender.send_rfc5424(
            fasyslog_severity(severity_of(name)),
            Some(msgid(name)),
            vec![element],
            one_line(&message_text(record, now_ns)),
        )?;
        sender.flush()
    }

    /// Sends one record; after a failure (the receiver restarted) connects
    /// again once and retries, then gives up with an error.
    pub fn send(&mut self, record: &Record, now_ns: u64) -> Result<()> {
        if self.send_once(record, now_ns).is_ok() {
            return Ok(());
        }
        self.reconnect()?;
        let what = format!("send to {}", self.describe());
        self.send_once(record, now_ns)
            .map_err(|e| Error::from_io(what, e))
    }
}

/// The journal socket `libsystemd` sends to.
pub const JOURNAL_SOCKET: &str = libsystemd::logging::SD_JOURNAL_SOCK_PATH;

/// Fails early, and clearly, when no journald listens.
pub fn check_journal() -> Result<()> {
    std::fs::metadata(JOURNAL_SOCKET)
        .map(|_| ())
        .map_err(|e| Error::from_io(format!("journald socket {JOURNAL_SOCKET}"), e))
}

pub fn send_journal(record: &Record, now_ns: u64) -> Result<()> {
    use libsystemd::logging::{journal_send, Priority};
    let priority = match severity_of(record_name(record)) {
        2 => Priority::Critical,
        3 => Priority::Error,
        4 => Priority::Warning,
        5 => Priority::Notice,
        _ => Priority::Info,
    };
    let fields = journal_fields(record, now_ns);
    journal_send(
        priority,
        &message_text(record, now_ns),
        fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .map_err(|e| Error::Msg(format!("send to the journal: {e}")))
}

/// OCSF class of each kind of record (Documentation/operations.rst):
/// (category_uid, class_uid, class name, activity_id, activity name).
fn ocsf_class(name: &str) -> (u32, u32, &'static str, u32, &'static str) {
    match name {
        "detection" => (2, 2004, "Detection Finding", 1, "Create"),
        "write-attempt" => (2, 2004, "Detection Finding", 1, "Create"),
        // Memory Activity: a guest page read in (7 = Read), or not.
        "page-resident" => (1, 1004, "Memory Activity", 7, "Read"),
        "page-failed" => (1, 1004, "Memory Activity", 99, "Other"),
        // Process Activity: a process of the guest appeared or went away.
        "process-start" => (1, 1007, "Process Activity", 1, "Launch"),
        "process-exit" => (1, 1007, "Process Activity", 2, "Terminate"),
        // Device Config State Change: the introspection state of a VM.
        _ => (5, 5019, "Device Config State Change", 99, "Other"),
    }
}

fn ocsf_severity(sev: u8) -> (u32, &'static str) {
    match sev {
        0..=2 => (4, "High"),
        3 | 4 => (3, "Medium"),
        _ => (1, "Informational"),
    }
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Uint(n) => json!(n),
        Value::Bool(b) => json!(b),
        Value::Str(s) | Value::Hex(s) => json!(s),
    }
}

fn non_empty_str(v: &Value) -> Option<&str> {
    match v {
        Value::Str(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// One OCSF event for `record`. Every attribute of the event is kept in
/// `unmapped`, under its `watch --format json` name.
pub fn ocsf_event(record: &Record, now_ns: u64, hostname: &str) -> Json {
    let name = record_name(record);
    let (category_uid, class_uid, class_name, activity_id, activity_name) = ocsf_class(name);
    let sev = severity_of(name);
    let (severity_id, severity_name) = ocsf_severity(sev);
    let (fields, time_ns): (&[(String, Value)], u64) = match record {
        Record::Event(Event {
            fields, time_ns, ..
        }) => (fields, *time_ns),
        Record::Overrun => (&[], now_ns),
    };
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let num = |k: &str| match get(k) {
        Some(Value::Uint(n)) => Some(*n),
        _ => None,
    };
    let mut unmapped = Map::new();
    for (k, v) in fields {
        unmapped.insert(k.clone(), to_json(v));
    }
    unmapped.insert("event".into(), json!(name));
    unmapped.insert("time_ns".into(), json!(time_ns));

    let vm = num("vm_id").map_or_else(|| "unknown".to_string(), |n| n.to_string());
    // The guest is a virtual device (type_id 6) of this host.
    let mut device = json!({
        "type_id": 6,
        "type": "Virtual",
        "uid": format!("kvm-pfi-vm-{vm}"),
        "hostname": hostname,
    });
    if let Some(Value::Str(s)) = get("stats_id") {
        device["name"] = json!(s);
    }
    let message = message_text(record, now_ns);
    let mut e = json!({
        "category_uid": category_uid,
        "class_uid": class_uid,
        "class_name": class_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "severity_id": severity_id,
        "severity": severity_name,
        "time": time_ns / 1_000_000,
        "message": message,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {
                "name": "kvm-pfi",
                "vendor_name": "kvm-pfi",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "log_name": "kvm_pfi/events",
            "event_code": name,
        },
        "device": device,
        "unmapped": unmapped,
    });
    match class_uid {
        2004 => {
            let detection = name == "detection";
            let rule = get("rule_name").map(crate::events::value_text);
            let title = match (&rule, detection) {
                (Some(r), true) => format!("Signature rule {r} matched guest memory"),
                (_, true) => "Signature matched guest memory".to_string(),
                (_, false) => "Guest write to a protected page".to_string(),
            };
            // Unique per finding: where, what, and when it was seen.
            let uid = format!(
                "kvm-pfi:{name}:vm{vm}:t{}:{:#x}:{time_ns}",
                num("target_id").unwrap_or(0),
                num("gva").unwrap_or(0)
            );
            let mut info = json!({
                "uid": uid,
                "title": title,
                "desc": message,
                "types": [name],
            });
            if detection {
                let mut analytic = json!({"type_id": 1, "type": "Rule"});
                if let Some(r) = rule {
                    analytic["name"] = json!(r);
                }
                if let Some(id) = num("rule_id") {
                    analytic["uid"] = json!(id.to_string());
                }
                info["analytic"] = analytic;
            }
            e["finding_info"] = info;
            e["status_id"] = json!(1);
            e["status"] = json!("New");
            e["is_alert"] = json!(true);
            e["confidence_id"] = json!(3);
            e["resources"] = json!([{
                "type": "KVM guest memory page",
                "uid": format!("vm{vm}:{:#x}", num("gva").unwrap_or(0)),
            }]);
        }
        1004 => {
            // The VMM's process is not in page events: only the guest's
            // address space (cr3) and address are; they stay in unmapped.
            e["actor"] = json!({"app_name": "kvm-pfi"});
            e["process"] = json!({"name": "guest address space", "uid": format!("vm{vm}:cr3:{:#x}", num("cr3").unwrap_or(0))});
        }
        1007 => {
            // The guest's process; uid: its task_struct, unique while it lives.
            let mut process = json!({
                "uid": format!("vm{vm}:task:{:#x}", num("task").unwrap_or(0)),
            });
            if let Some(pid) = num("pid") {
                process["pid"] = json!(pid);
            }
            if let Some(Value::Str(comm)) = get("comm") {
                process["name"] = json!(comm);
            }
            // A kernel thread (or an unreadable path) has an empty exe.
            if let Some(exe) = get("exe").and_then(non_empty_str) {
                let base = exe.rsplit('/').next().unwrap_or(exe);
                process["file"] = json!({
                    "name": base,
                    "path": exe,
                    "type_id": 1,
                    "type": "Regular File",
                });
            }
            // Who launched it: its parent. An exit names no one: the
            // observer is kvm-pfi, as for page events.
            match num("ppid") {
                Some(ppid) => {
                    process["parent_process"] = json!({"pid": ppid});
                    e["actor"] = json!({"process": {"pid": ppid}});
                }
                None => e["actor"] = json!({"app_name": "kvm-pfi"}),
            }
            e["process"] = process;
        }
        _ => {}
    }
    e
}

/// Reads records back from `watch --format json` output (a file or "-"),
/// so that a recorded stream can be sent to a receiver.
pub fn read_replay(path: &Path) -> Result<Vec<Record>> {
    let name = path.display().to_string();
    let reader: Box<dyn BufRead> = if name == "-" {
        Box::new(io::BufReader::new(io::stdin()))
    } else {
        Box::new(io::BufReader::new(
            std::fs::File::open(path).map_err(|e| Error::input(&name, e))?,
        ))
    };
    let mut records = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Error::input(&name, e))?;
        if line.trim().is_empty() {
            continue;
        }
        records.push(
            parse_record(&line).map_err(|why| Error::Data(format!("{name}:{}: {why}", i + 1)))?,
        );
    }
    Ok(records)
}

/// A JSON object's members in the order of the text (serde_json's Map
/// sorts them), so that a replayed event keeps its attribute order.
struct Members(Vec<(String, Json)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Members, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = m.next_entry()? {
                    v.push(kv);
                }
                Ok(Members(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// One line of `watch --format json` back into a record.
pub fn parse_record(line: &str) -> std::result::Result<Record, String> {
    let Members(obj) = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let name = obj
        .iter()
        .find(|(k, _)| k == "event")
        .and_then(|(_, v)| v.as_str())
        .ok_or("no \"event\" string")?;
    if name == "overrun" {
        return Ok(Record::Overrun);
    }
    let mut fields = Vec::new();
    let mut time_ns = 0;
    for (k, v) in &obj {
        let value = match (k.as_str(), v) {
            ("event", _) => continue,
            ("time_ns", v) => {
                time_ns = v.as_u64().ok_or("time_ns is not an unsigned integer")?;
                continue;
            }
            (_, Json::Number(n)) => Value::Uint(
                n.as_u64()
                    .ok_or_else(|| format!("{k}: not an unsigned integer"))?,
            ),
            (_, Json::Bool(b)) => Value::Bool(*b),
            // Bytes are hex: `data` and attributes of a newer module.
            (k, Json::String(s)) if k == "data" || k.starts_with("attr_") => Value::Hex(s.clone()),
            (_, Json::String(s)) => Value::Str(s.clone()),
            _ => return Err(format!("{k}: unexpected value {v}")),
        };
        fields.push((k.clone(), value));
    }
    Ok(Record::Event(Event {
        name: name.to_string(),
        fields,
        time_ns,
    }))
}

/// Where the records of `watch` go.
pub enum Output<'a> {
    /// `--format json` or `--pretty`.
    Lines {
        out: &'a mut dyn Write,
        pretty: bool,
    },
    Ocsf {
        out: &'a mut dyn Write,
        hostname: String,
    },
    Journald,
    Syslog(Box<Syslog>),
}

impl Output<'_> {
    pub fn emit(&mut self, record: &Record, now_ns: u64) -> Result<()> {
        let line = match self {
            Output::Journald => return send_journal(record, now_ns),
            Output::Syslog(s) => return s.send(record, now_ns),
            Output::Lines { pretty, .. } => render(record, *pretty, now_ns),
            Output::Ocsf { hostname, .. } => ocsf_event(record, now_ns, hostname).to_string(),
        };
        let (Output::Lines { out, .. } | Output::Ocsf { out, .. }) = self else {
            unreachable!()
        };
        // Flushed per line: consumers read events as they happen.
        writeln!(out, "{line}")
            .and_then(|_| out.flush())
            .map_err(|e| Error::from_io("write stdout", e))
    }
}

/// This host's name, for OCSF's `device.hostname`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi;
    use crate::events::decode_event;
    use crate::events::tests::detection_attrs;

    fn detection() -> Record {
        Record::Event(decode_event(
            abi::KVM_PFI_CMD_DETECTION as u8,
            &detection_attrs(abi::KVM_PFI_HOW_INJECTED, 1),
            1_700_000_000_123_456_789,
        ))
    }

    #[test]
    fn json_lines_round_trip_for_replay() {
        let r = detection();
        let line = render(&r, false, 0);
        assert_eq!(parse_record(&line).unwrap(), r);
        assert_eq!(
            parse_record(r#"{"event":"overrun"}"#).unwrap(),
            Record::Overrun
        );
        assert!(parse_record("[1]").is_err());
        assert!(parse_record(r#"{"event":"x","vm_id":-1}"#).is_err());
    }

    #[test]
    fn every_known_event_has_its_own_message_id() {
        let mut ids: Vec<&str> = MESSAGE_IDS.iter().map(|(_, id)| *id).collect();
        ids.push(UNKNOWN_MESSAGE_ID);
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        }
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);
        for (_, name) in crate::events::COMMANDS {
            assert_ne!(message_id(name), UNKNOWN_MESSAGE_ID, "{name}");
        }
    }

    #[test]
    fn journal_fields_carry_every_attribute() {
        let f = journal_fields(&detection(), 0);
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("KVM_PFI_RULE_NAME"), Some("Evil_Marker"));
        assert_eq!(get("KVM_PFI_GVA"), Some("139637976732212"));
        assert_eq!(get("KVM_PFI_EVENT"), Some("detection"));
        assert_eq!(get("KVM_PFI_TIME_NS"), Some("1700000000123456789"));
        assert_eq!(get("MESSAGE_ID"), Some(message_id("detection")));
        assert_eq!(journal_field("attr_200"), "KVM_PFI_ATTR_200");
    }

    #[test]
    fn syslog_leaves_page_contents_out() {
        let page = Record::Event(Event {
            name: "page-resident".into(),
            fields: vec![("data".into(), Value::Hex("00".repeat(4096)))],
            time_ns: 1,
        });
        let p = sd_params(&page, 0);
        assert!(p.contains(&("data_bytes".into(), "4096".into())), "{p:?}");
        assert!(!p.iter().any(|(k, _)| k == "data"));
        assert_eq!(msgid("write-attempt"), "write-attempt");
        assert_eq!(one_line("a\nb"), "a b");
    }

    #[test]
    fn ocsf_classes() {
        let e = ocsf_event(&detection(), 0, "h");
        assert_eq!(e["class_uid"], 2004);
        assert_eq!(e["type_uid"], 200401);
        assert_eq!(e["time"], 1_700_000_000_123u64);
        assert_eq!(e["finding_info"]["analytic"]["name"], "Evil_Marker");
        assert_eq!(e["unmapped"]["rule_name"], "Evil_Marker");
        assert_eq!(e["severity_id"], 4);
        let o = ocsf_event(&Record::Overrun, 5_000_000, "h");
        assert_eq!(o["class_uid"], 5019);
        assert_eq!(o["time"], 5);
    }

    #[test]
    fn process_events_in_every_format() {
        use crate::events::tests::{process_exit_attrs, process_start_attrs};
        let start = Record::Event(decode_event(
            abi::KVM_PFI_CMD_PROCESS_START as u8,
            &process_start_attrs(0x1234000, b"/usr/bin/bash"),
            1_700_000_000_000_000_000,
        ));
        let exit = Record::Event(decode_event(
            abi::KVM_PFI_CMD_PROCESS_EXIT as u8,
            &process_exit_attrs(0x1234000),
            1_700_000_001_000_000_000,
        ));
        assert_eq!(severity_of("process-start"), severity::INFO);
        assert_eq!(severity_of("process-exit"), severity::INFO);
        assert_ne!(message_id("process-start"), message_id("process-exit"));
        // Replay gives the same record back.
        for r in [&start, &exit] {
            assert_eq!(&parse_record(&render(r, false, 0)).unwrap(), r);
        }
        let f = journal_fields(&start, 0);
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("KVM_PFI_EXE"), Some("/usr/bin/bash"));
        assert_eq!(get("KVM_PFI_TASK_FLAGS"), Some("4194560"));
        assert_eq!(get("KVM_PFI_COMM"), Some("bash"));
        let p = sd_params(&exit, 0);
        assert!(p.contains(&("pid".into(), "412".into())), "{p:?}");
        assert!(message_text(&exit, 0).starts_with("process-exit vm 2 pid 412 \"bash\" exited"));

        let e = ocsf_event(&start, 0, "h");
        assert_eq!(
            (
                &e["category_uid"],
                &e["class_uid"],
                &e["activity_id"],
                &e["type_uid"]
            ),
            (&json!(1), &json!(1007), &json!(1), &json!(100701))
        );
        assert_eq!(e["process"]["pid"], 412);
        assert_eq!(e["process"]["name"], "bash");
        assert_eq!(e["process"]["uid"], "vm2:task:0xffff888004120000");
        assert_eq!(e["process"]["file"]["path"], "/usr/bin/bash");
        assert_eq!(e["process"]["file"]["name"], "bash");
        assert_eq!(e["process"]["parent_process"]["pid"], 1);
        assert_eq!(e["actor"]["process"]["pid"], 1);
        assert_eq!(e["severity_id"], 1);
        assert_eq!(e["unmapped"]["exe"], "/usr/bin/bash");
        let x = ocsf_event(&exit, 0, "h");
        assert_eq!(
            (&x["class_uid"], &x["activity_id"]),
            (&json!(1007), &json!(2))
        );
        assert_eq!(x["process"]["pid"], 412);
        assert_eq!(x["actor"]["app_name"], "kvm-pfi");
        assert!(x["process"].get("file").is_none());
        // A kernel thread has no file.
        let k = Record::Event(decode_event(
            abi::KVM_PFI_CMD_PROCESS_START as u8,
            &process_start_attrs(0, b""),
            0,
        ));
        assert!(ocsf_event(&k, 0, "h")["process"].get("file").is_none());
    }
}
