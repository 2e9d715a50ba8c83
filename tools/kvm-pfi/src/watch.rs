// SPDX-License-Identifier: GPL-2.0
//! `kvm-pfi watch` (and `snapshot`): follow the "events" group of the
//! "kvm_pfi" family, handing each event to a `Sink`.
//!
//! The kernel does not tell a listener that its group went away: unregistering
//! a family silently drops all memberships. So we also listen to nlctrl's
//! "notify" group, and treat CTRL_CMD_DELFAMILY/DELMCAST_GRP for our family
//! (or an overrun, which may have swallowed one) as "re-resolve and re-join".
//! Re-joining an existing membership is harmless, so we err on that side.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netlink_packet_generic::constants::GENL_ID_CTRL;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

use crate::abi;
use crate::error::{Error, Result};
use crate::events::{decode_event, Record};
use crate::formats::Output;
use crate::genl::{self, classify_ctrl, parse_datagram, CtrlNote, FamilyInfo, Msg, Resolve};

/// How often to look for the family while it is not registered.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// How long to follow: `--count`, `--timeout`, `--ready-file`.
#[derive(Debug, Clone, Default)]
pub struct FollowOpts {
    /// Stop after this many counted events (the sink says which count).
    pub count: Option<u64>,
    pub timeout: Option<Duration>,
    pub ready_file: Option<PathBuf>,
}

impl From<crate::cli::Follow> for FollowOpts {
    fn from(f: crate::cli::Follow) -> Self {
        FollowOpts {
            count: f.count,
            timeout: f.timeout,
            ready_file: f.ready_file,
        }
    }
}

/// What is done with the events: printed (`watch`), saved (`snapshot`).
pub trait Sink {
    /// The command's name and what --count counts, for messages
    /// ("watch", "events").
    fn names(&self) -> (&'static str, &'static str);
    /// A message of the kvm_pfi family (genl command, attribute bytes),
    /// received at `now_ns`; returns whether it counts towards --count.
    fn event(
        &mut self,
        cmd: u8,
        attrs: &[u8],
        now_ns: u64,
        note: &mut dyn FnMut(&str),
    ) -> Result<bool>;
    /// Events were lost (the socket's receive queue overflowed).
    fn overrun(&mut self, now_ns: u64, note: &mut dyn FnMut(&str)) -> Result<()>;
}

/// `watch`: every event in the `--format` asked for.
pub struct Printer<'a> {
    pub output: Output<'a>,
}

impl Printer<'_> {
    fn emit(&mut self, record: &Record, now_ns: u64) -> Result<()> {
        self.output.emit(record, now_ns)
    }
}

impl Sink for Printer<'_> {
    fn names(&self) -> (&'static str, &'static str) {
        ("watch", "events")
    }

    fn event(
        &mut self,
        cmd: u8,
        attrs: &[u8],
        now_ns: u64,
        _: &mut dyn FnMut(&str),
    ) -> Result<bool> {
        self.emit(&Record::Event(decode_event(cmd, attrs, now_ns)), now_ns)?;
        Ok(true)
    }

    fn overrun(&mut self, now_ns: u64, _: &mut dyn FnMut(&str)) -> Result<()> {
        self.emit(&Record::Overrun, now_ns)
    }
}

#[derive(Debug)]
pub enum Incoming {
    Datagram(Vec<u8>),
    Timeout,
    /// ENOBUFS: the receive queue overflowed and messages were dropped.
    Overrun,
}

/// The netlink operations `watch` needs; faked in tests.
pub trait Transport {
    /// CTRL_CMD_GETFAMILY; Ok(None) if no such family is registered.
    fn resolve(&mut self, family: &str) -> Result<Option<FamilyInfo>>;
    /// Adds the listening socket to multicast group `group`.
    fn join(&mut self, group: u32) -> Result<()>;
    /// Next datagram of the listening socket, waiting at most `timeout`.
    fn recv(&mut self, timeout: Option<Duration>) -> Result<Incoming>;
}

/// Environment of the loop, separated so that tests control time and output.
pub struct Io<'a> {
    /// Notices for the operator (stderr).
    pub note: &'a mut dyn FnMut(&str),
    /// CLOCK_REALTIME in ns.
    pub now_ns: &'a mut dyn FnMut() -> u64,
}

fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

pub fn run<T: Transport>(
    t: &mut T,
    opts: &FollowOpts,
    sink: &mut dyn Sink,
    io: &mut Io<'_>,
) -> Result<()> {
    let family = abi::family_name();
    let group_name = abi::events_group_name();
    let deadline = opts.timeout.map(|d| Instant::now() + d);

    // Follow nlctrl first, so that no unregistration of our family after we
    // resolve it can go unnoticed.
    let ctrl = genl::ctrl_family_name();
    let ctrl_info = t.resolve(ctrl)?.ok_or_else(|| {
        Error::os(
            format!("resolve generic netlink family {ctrl}"),
            libc::ENOENT,
        )
    })?;
    let notify = ctrl_info.group(genl::CTRL_NOTIFY_GROUP).ok_or_else(|| {
        Error::Msg(format!(
            "family {ctrl} has no multicast group {}",
            genl::CTRL_NOTIFY_GROUP
        ))
    })?;
    t.join(notify)?;

    // Family id whose messages are events; kept after the family goes away,
    // since events queued before its removal are still to be printed.
    let mut family_id: Option<u16> = None;
    let mut joined = false;
    let mut ever_joined = false;
    let mut said_waiting = false;
    let mut seen: u64 = 0;

    loop {
        if opts.count.is_some_and(|n| seen >= n) {
            return Ok(());
        }
        let mut wait = remaining(deadline);
        if !joined {
            match t.resolve(family)? {
                Some(info) => {
                    let group = info.group(group_name).ok_or_else(|| {
                        Error::Msg(format!(
                            "family {family} has no multicast group {group_name}"
                        ))
                    })?;
                    t.join(group).map_err(|e| match e {
                        Error::Os { errno, .. } => {
                            Error::os(format!("join multicast group {family}/{group_name}"), errno)
                        }
                        other => other,
                    })?;
                    family_id = Some(info.id);
                    joined = true;
                    if said_waiting {
                        (io.note)(&format!("family {family} is registered; listening"));
                        said_waiting = false;
                    }
                    if !ever_joined {
                        ever_joined = true;
                        if let Some(path) = &opts.ready_file {
                            std::fs::File::create(path).map_err(|e| {
                                Error::from_io(format!("create {}", path.display()), e)
                            })?;
                        }
                    }
                }
                None => {
                    if !said_waiting {
                        (io.note)(&format!(
                            "generic netlink family {family} is not registered; waiting for it"
                        ));
                        said_waiting = true;
                    }
                    // Keep draining nlctrl meanwhile; its NEWFAMILY cuts the wait short.
                    wait = Some(wait.map_or(RETRY_INTERVAL, |w| w.min(RETRY_INTERVAL)));
                }
            }
        }

        if deadline.is_some_and(|d| Instant::now() >= d) {
            return match opts.count {
                Some(n) => {
                    let (cmd, unit) = sink.names();
                    Err(Error::os(
                        format!("{cmd}: {seen} of {n} {unit} after the timeout"),
                        libc::ETIMEDOUT,
                    ))
                }
                None => Ok(()),
            };
        }

        match t.recv(wait)? {
            Incoming::Timeout => {}
            Incoming::Overrun => {
                sink.overrun((io.now_ns)(), io.note)?;
                // A lost DELFAMILY would leave us deaf: check again.
                joined = false;
            }
            Incoming::Datagram(d) => {
                for msg in parse_datagram(&d) {
                    let Msg::Genl {
                        family: ty,
                        cmd,
                        attrs,
                        ..
                    } = msg
                    else {
                        continue;
                    };
                    if ty == GENL_ID_CTRL {
                        match classify_ctrl(cmd, &attrs, family) {
                            CtrlNote::Gone if joined => {
                                joined = false;
                                (io.note)(&format!(
                                    "generic netlink family {family} went away; waiting for it"
                                ));
                                said_waiting = true;
                            }
                            // Only a hint to resolve now rather than at the next tick.
                            CtrlNote::Gone | CtrlNote::Appeared | CtrlNote::Unrelated => {}
                        }
                    } else if Some(ty) == family_id {
                        if sink.event(cmd, &attrs, (io.now_ns)(), io.note)? {
                            seen += 1;
                        }
                        if opts.count.is_some_and(|n| seen >= n) {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// The real thing: one socket for GETFAMILY requests, one that listens, so
/// that replies never interleave with multicast traffic.
pub struct NetlinkTransport {
    req: Socket,
    listen: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// Big enough for any genl message the kernel multicasts (NLMSG_GOODSIZE).
const RECV_BUF: usize = 64 * 1024;
/// Receive queue: room for bursts of attach/detach events.
const RCVBUF_BYTES: libc::c_int = 1 << 20;

fn poll_in(fd: i32, timeout: Option<Duration>) -> Result<bool> {
    let ms = match timeout {
        None => -1,
        // Round up so that a short remaining time does not become a busy loop.
        Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
    };
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINTR) {
            return Ok(false);
        }
        return Err(Error::from_io("poll netlink socket", err));
    }
    Ok(rc > 0)
}

impl NetlinkTransport {
    pub fn new() -> Result<Self> {
        let open = || -> Result<Socket> {
            let mut s = Socket::new(NETLINK_GENERIC)
                .map_err(|e| Error::from_io("socket NETLINK_GENERIC", e))?;
            s.bind_auto()
                .map_err(|e| Error::from_io("bind netlink socket", e))?;
            Ok(s)
        };
        let req = open()?;
        let listen = open()?;
        // Best effort: capped by net.core.rmem_max, and the default still works.
        let _ = listen.set_rx_buf_sz(RCVBUF_BYTES);
        Ok(NetlinkTransport {
            req,
            listen,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    fn recv_on(buf: &mut Vec<u8>, sock: &Socket) -> std::io::Result<()> {
        buf.clear();
        buf.reserve(RECV_BUF);
        sock.recv(buf, 0).map(|_| ())
    }
}

impl Transport for NetlinkTransport {
    fn resolve(&mut self, family: &str) -> Result<Option<FamilyInfo>> {
        self.seq = self.seq.wrapping_add(1);
        let req = genl::getfamily_request(family, self.seq);
        let what = || format!("resolve generic netlink family {family}");
        self.req
            .send_to(&req, &SocketAddr::new(0, 0), 0)
            .map_err(|e| Error::from_io(what(), e))?;
        // nlctrl answers synchronously; the timeout only guards against a
        // reply that never comes.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if !poll_in(self.req.as_raw_fd(), remaining(Some(deadline)))? {
                if Instant::now() >= deadline {
                    return Err(Error::os(what(), libc::ETIMEDOUT));
                }
                continue;
            }
            Self::recv_on(&mut self.buf, &self.req).map_err(|e| Error::from_io(what(), e))?;
            match genl::parse_getfamily_reply(&self.buf, self.seq, family)? {
                Resolve::Found(info) => return Ok(Some(info)),
                Resolve::Missing => return Ok(None),
                Resolve::Pending => {}
            }
        }
    }

    fn join(&mut self, group: u32) -> Result<()> {
        self.listen
            .add_membership(group)
            .map_err(|e| Error::from_io(format!("join multicast group {group}"), e))
    }

    fn recv(&mut self, timeout: Option<Duration>) -> Result<Incoming> {
        if !poll_in(self.listen.as_raw_fd(), timeout)? {
            return Ok(Incoming::Timeout);
        }
        match Self::recv_on(&mut self.buf, &self.listen) {
            Ok(()) => Ok(Incoming::Datagram(std::mem::take(&mut self.buf))),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(Incoming::Overrun),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(Incoming::Timeout),
            Err(e) => Err(Error::from_io("receive from netlink socket", e)),
        }
    }
}

pub fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::events::tests::{attached_attrs, nla};
    use crate::genl::tests::{family_attrs, nlmsg};
    use netlink_packet_generic::constants::{CTRL_CMD_DELFAMILY, CTRL_CMD_NEWFAMILY};
    use std::collections::VecDeque;

    pub const NOTIFY: u32 = 0x10;

    /// Scripted kernel: answers for successive resolves of kvm_pfi and
    /// datagrams (or overruns) in order, then timeouts.
    #[derive(Default)]
    pub struct Fake {
        pub resolves: VecDeque<Option<FamilyInfo>>,
        pub incoming: VecDeque<Incoming>,
        pub joins: Vec<u32>,
        pub resolve_calls: usize,
        pub join_errno: Option<i32>,
    }

    pub fn info(id: u16, group: u32) -> Option<FamilyInfo> {
        Some(FamilyInfo {
            id,
            name: "kvm_pfi".into(),
            groups: vec![("events".into(), group)],
        })
    }

    impl Transport for Fake {
        fn resolve(&mut self, family: &str) -> Result<Option<FamilyInfo>> {
            if family == "nlctrl" {
                return Ok(Some(FamilyInfo {
                    id: GENL_ID_CTRL,
                    name: family.into(),
                    groups: vec![("notify".into(), NOTIFY)],
                }));
            }
            self.resolve_calls += 1;
            Ok(self.resolves.pop_front().unwrap_or(None))
        }
        fn join(&mut self, group: u32) -> Result<()> {
            if group != NOTIFY {
                if let Some(errno) = self.join_errno {
                    return Err(Error::os(format!("join multicast group {group}"), errno));
                }
            }
            self.joins.push(group);
            Ok(())
        }
        fn recv(&mut self, _timeout: Option<Duration>) -> Result<Incoming> {
            Ok(self.incoming.pop_front().unwrap_or(Incoming::Timeout))
        }
    }

    struct Run {
        out: String,
        notes: Vec<String>,
        result: Result<()>,
    }

    /// Options of `watch` as the tests give them.
    #[derive(Default)]
    struct WatchOpts {
        pretty: bool,
        count: Option<u64>,
        timeout: Option<Duration>,
        ready_file: Option<PathBuf>,
    }

    fn run_fake(fake: &mut Fake, opts: &WatchOpts) -> Run {
        let mut out = Vec::new();
        let mut notes = Vec::new();
        let mut note = |s: &str| notes.push(s.to_string());
        let mut clock = 1000;
        let mut now = || {
            clock += 1;
            clock
        };
        let follow = FollowOpts {
            count: opts.count,
            timeout: opts.timeout,
            ready_file: opts.ready_file.clone(),
        };
        let result = run(
            fake,
            &follow,
            &mut Printer {
                output: Output::Lines {
                    out: &mut out,
                    pretty: opts.pretty,
                },
            },
            &mut Io {
                note: &mut note,
                now_ns: &mut now,
            },
        );
        Run {
            out: String::from_utf8(out).unwrap(),
            notes,
            result,
        }
    }

    fn event_datagram(family: u16) -> Incoming {
        Incoming::Datagram(nlmsg(
            family,
            abi::KVM_PFI_CMD_VM_ATTACHED as u8,
            0,
            &attached_attrs(),
        ))
    }

    fn lines(out: &str) -> Vec<serde_json::Value> {
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn prints_events_until_count_and_signals_readiness() {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let mut fake = Fake {
            resolves: [info(30, 9)].into(),
            ..Default::default()
        };
        fake.incoming.push_back(event_datagram(30));
        // Traffic of another family on the socket is not ours to print.
        fake.incoming
            .push_back(Incoming::Datagram(nlmsg(31, 1, 0, &[])));
        let vm_id = nla(abi::KVM_PFI_A_EVENT_VM_ID as u16, &1u32.to_ne_bytes());
        let mut two = nlmsg(30, abi::KVM_PFI_CMD_VM_DETACHED as u8, 0, &vm_id);
        two.extend(nlmsg(30, 77, 0, &[]));
        fake.incoming.push_back(Incoming::Datagram(two));
        let opts = WatchOpts {
            count: Some(3),
            ready_file: Some(ready.clone()),
            ..Default::default()
        };
        let r = run_fake(&mut fake, &opts);
        r.result.unwrap();
        assert!(ready.exists());
        assert_eq!(fake.joins, vec![NOTIFY, 9]);
        let l = lines(&r.out);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0]["event"], "vm-attached");
        assert_eq!(l[0]["stats_id"], "kvm-123");
        assert_eq!(l[1]["event"], "vm-detached");
        assert_eq!(l[1]["vm_id"], 1);
        assert_eq!(l[2]["event"], "cmd_77");
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }

    #[test]
    fn waits_for_the_family_then_survives_a_reload() {
        let mut fake = Fake {
            // absent twice at start, present, absent once after unload, back with new ids
            resolves: [None, None, info(30, 9), None, info(33, 12)].into(),
            ..Default::default()
        };
        fake.incoming.push_back(Incoming::Timeout); // 200 ms tick while missing
        fake.incoming.push_back(Incoming::Timeout);
        fake.incoming.push_back(event_datagram(30));
        // nlctrl says another family went: ignored
        fake.incoming.push_back(Incoming::Datagram(nlmsg(
            GENL_ID_CTRL,
            CTRL_CMD_DELFAMILY,
            0,
            &family_attrs(40, "other", &[]),
        )));
        // An event queued before the unload, then the unload itself.
        let mut d = event_datagram_bytes(30);
        d.extend(nlmsg(
            GENL_ID_CTRL,
            CTRL_CMD_DELFAMILY,
            0,
            &family_attrs(30, "kvm_pfi", &[("events", 9)]),
        ));
        fake.incoming.push_back(Incoming::Datagram(d));
        fake.incoming.push_back(Incoming::Datagram(nlmsg(
            GENL_ID_CTRL,
            CTRL_CMD_NEWFAMILY,
            0,
            &family_attrs(33, "kvm_pfi", &[("events", 12)]),
        )));
        fake.incoming.push_back(event_datagram(33));
        let r = run_fake(
            &mut fake,
            &WatchOpts {
                count: Some(3),
                ..Default::default()
            },
        );
        r.result.unwrap();
        assert_eq!(fake.joins, vec![NOTIFY, 9, 12]);
        assert_eq!(fake.resolve_calls, 5);
        assert_eq!(lines(&r.out).len(), 3);
        assert_eq!(r.notes.len(), 4, "{:?}", r.notes);
        assert!(r.notes[1].contains("registered; listening"));
        assert!(r.notes[2].contains("went away"));
    }

    fn event_datagram_bytes(family: u16) -> Vec<u8> {
        let Incoming::Datagram(d) = event_datagram(family) else {
            unreachable!()
        };
        d
    }

    #[test]
    fn overrun_is_reported_and_membership_renewed() {
        let mut fake = Fake {
            resolves: [info(30, 9), info(30, 9)].into(),
            ..Default::default()
        };
        fake.incoming.push_back(Incoming::Overrun);
        fake.incoming.push_back(event_datagram(30));
        let r = run_fake(
            &mut fake,
            &WatchOpts {
                count: Some(1),
                ..Default::default()
            },
        );
        r.result.unwrap();
        let l = lines(&r.out);
        assert_eq!(l[0], serde_json::json!({"event": "overrun"}));
        assert_eq!(l[1]["event"], "vm-attached");
        assert_eq!(fake.joins, vec![NOTIFY, 9, 9]);
    }

    #[test]
    fn join_without_privilege_fails() {
        let mut fake = Fake {
            resolves: [info(30, 9)].into(),
            join_errno: Some(libc::EPERM),
            ..Default::default()
        };
        let err = run_fake(&mut fake, &WatchOpts::default())
            .result
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "join multicast group kvm_pfi/events: Operation not permitted"
        );
    }

    #[test]
    fn family_without_events_group_fails() {
        let mut fake = Fake {
            resolves: [Some(FamilyInfo {
                id: 30,
                name: "kvm_pfi".into(),
                groups: vec![],
            })]
            .into(),
            ..Default::default()
        };
        let err = run_fake(&mut fake, &WatchOpts::default())
            .result
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "family kvm_pfi has no multicast group events"
        );
    }

    #[test]
    fn timeout_with_and_without_count() {
        let short = Some(Duration::from_millis(20));
        let mut fake = Fake {
            resolves: [info(30, 9)].into(),
            ..Default::default()
        };
        fake.incoming.push_back(event_datagram(30));
        let r = run_fake(
            &mut fake,
            &WatchOpts {
                count: Some(2),
                timeout: short,
                ..Default::default()
            },
        );
        let err = r.result.unwrap_err();
        assert_eq!(err.errno(), Some(libc::ETIMEDOUT));
        assert_eq!(
            err.to_string(),
            "watch: 1 of 2 events after the timeout: Connection timed out"
        );
        assert_eq!(lines(&r.out).len(), 1);

        let mut fake = Fake {
            resolves: [info(30, 9)].into(),
            ..Default::default()
        };
        run_fake(
            &mut fake,
            &WatchOpts {
                timeout: short,
                ..Default::default()
            },
        )
        .result
        .unwrap();
    }

    /// The real socket code against the kernel's own nlctrl, which every
    /// Linux has: resolve, a missing family, joining its notify group.
    #[test]
    fn real_netlink_resolve() {
        let mut t = NetlinkTransport::new().unwrap();
        let ctrl = t
            .resolve("nlctrl")
            .unwrap()
            .expect("nlctrl is always registered");
        assert_eq!(ctrl.id, GENL_ID_CTRL);
        let notify = ctrl.group("notify").expect("nlctrl has a notify group");
        t.join(notify).unwrap();
        // (At most GENL_NAMSIZ-1 characters, else nlctrl answers EINVAL.)
        assert!(t.resolve("kvm_pfi_nosuch").unwrap().is_none());
        // Nothing is expected on the group; this only exercises poll/recv.
        assert!(matches!(
            t.recv(Some(Duration::from_millis(1))).unwrap(),
            Incoming::Timeout | Incoming::Datagram(_)
        ));
    }

    /// The new events through the whole loop, as the socket delivers them.
    #[test]
    fn detection_events_in_json_and_pretty() {
        use crate::events::tests::detection_attrs;
        for pretty in [false, true] {
            let mut fake = Fake {
                resolves: [info(30, 9)].into(),
                ..Default::default()
            };
            fake.incoming.push_back(Incoming::Datagram(nlmsg(
                30,
                abi::KVM_PFI_CMD_DETECTION as u8,
                0,
                &detection_attrs(abi::KVM_PFI_HOW_INJECTED, 1),
            )));
            let sigs = [
                nla(abi::KVM_PFI_A_EVENT_GENERATION as u16, &4u32.to_ne_bytes()),
                nla(abi::KVM_PFI_A_EVENT_NR_RULES as u16, &2u32.to_ne_bytes()),
            ]
            .concat();
            fake.incoming.push_back(Incoming::Datagram(nlmsg(
                30,
                abi::KVM_PFI_CMD_SIGS_LOADED as u8,
                0,
                &sigs,
            )));
            let r = run_fake(
                &mut fake,
                &WatchOpts {
                    count: Some(2),
                    pretty,
                    ..Default::default()
                },
            );
            r.result.unwrap();
            let out: Vec<&str> = r.out.lines().collect();
            if pretty {
                assert!(
                    out[0].contains(
                        " detection rule \"Evil_Marker\" vm 3 target 5 gva 0x7f0000001234 (offset 0x234, 16 bytes)"
                    ) && out[0].contains(": page brought in by injection (1 #PF);"),
                    "{}",
                    out[0]
                );
                assert!(
                    out[1].ends_with(" sigs-loaded generation 4: 2 rules active"),
                    "{}",
                    out[1]
                );
            } else {
                let l = lines(&r.out);
                assert_eq!(l[0]["event"], "detection");
                assert_eq!(l[0]["rule_name"], "Evil_Marker");
                assert_eq!(l[0]["offset"], 0x234);
                assert_eq!(l[0]["how"], "injected");
                assert_eq!(l[1]["event"], "sigs-loaded");
                assert_eq!(l[1]["nr_rules"], 2);
            }
        }
    }

    #[test]
    fn pretty_output() {
        let mut fake = Fake {
            resolves: [info(30, 9)].into(),
            ..Default::default()
        };
        fake.incoming.push_back(event_datagram(30));
        let r = run_fake(
            &mut fake,
            &WatchOpts {
                count: Some(1),
                pretty: true,
                ..Default::default()
            },
        );
        r.result.unwrap();
        assert!(
            r.out.ends_with(
                " vm-attached vm_id=1 vmm_pid=123 stats_id=\"kvm-123\" attach_flags=0\n"
            ),
            "{}",
            r.out
        );
    }
}
