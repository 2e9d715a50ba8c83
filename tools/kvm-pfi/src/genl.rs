// SPDX-License-Identifier: GPL-2.0
//! Generic netlink plumbing: resolving a family and its multicast groups
//! through nlctrl, and telling nlctrl's notifications apart.
//!
//! Replies and notifications are parsed here rather than with
//! netlink-packet-generic's `GenlCtrl`, whose parser rejects attributes it
//! does not know: a newer kernel adding one to CTRL_CMD_GETFAMILY replies
//! must not break `watch`.

use netlink_packet_core::{
    parse_string, parse_u16, parse_u32, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NlasIterator, ParseableParametrized, NLM_F_REQUEST,
};
use netlink_packet_generic::constants::{
    CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME, CTRL_ATTR_MCAST_GROUPS, CTRL_ATTR_MCAST_GRP_ID,
    CTRL_ATTR_MCAST_GRP_NAME, CTRL_CMD_DELFAMILY, CTRL_CMD_DELMCAST_GRP, CTRL_CMD_NEWFAMILY,
    CTRL_CMD_NEWMCAST_GRP, GENL_ID_CTRL,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};

use crate::error::{Error, Result};

/// nlctrl's own family name and the group it announces families on.
pub fn ctrl_family_name() -> &'static str {
    GenlCtrl::family_name()
}
pub const CTRL_NOTIFY_GROUP: &str = "notify";

/// A generic netlink payload kept as raw attribute bytes, so that every
/// family (ours, nlctrl) is decoded by code that tolerates the unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawGenl(pub Vec<u8>);

impl ParseableParametrized<[u8], GenlHeader> for RawGenl {
    fn parse_with_param(
        buf: &[u8],
        _: GenlHeader,
    ) -> std::result::Result<Self, netlink_packet_core::DecodeError> {
        Ok(RawGenl(buf.to_vec()))
    }
}

/// One generic netlink message out of a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// message type (family id), genl command, sequence number, attributes
    Genl {
        family: u16,
        cmd: u8,
        seq: u32,
        attrs: Vec<u8>,
    },
    /// NLMSG_ERROR: 0 for an ack, else a negative errno
    Error { seq: u32, code: i32 },
    /// NLMSG_DONE, NOOP, OVERRUN or anything unparsable
    Other,
}

/// Splits a received datagram into its netlink messages.
pub fn parse_datagram(mut buf: &[u8]) -> Vec<Msg> {
    let mut out = Vec::new();
    while let Ok(nb) = NetlinkBuffer::new_checked(buf) {
        let len = nb.length() as usize;
        let msg = match NetlinkMessage::<GenlMessage<RawGenl>>::deserialize(&buf[..len]) {
            Ok(m) => match m.payload {
                NetlinkPayload::InnerMessage(g) => Msg::Genl {
                    family: m.header.message_type,
                    cmd: g.header.cmd,
                    seq: m.header.sequence_number,
                    attrs: g.payload.0,
                },
                NetlinkPayload::Error(e) => Msg::Error {
                    seq: m.header.sequence_number,
                    code: e.raw_code(),
                },
                _ => Msg::Other,
            },
            Err(_) => Msg::Other,
        };
        out.push(msg);
        // Messages are NLMSG_ALIGNTO-aligned within a datagram.
        let next = (len + 3) & !3;
        if len == 0 || next >= buf.len() {
            break;
        }
        buf = &buf[next..];
    }
    out
}

/// What CTRL_CMD_GETFAMILY (or a notification) says about a family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilyInfo {
    pub id: u16,
    pub name: String,
    pub groups: Vec<(String, u32)>,
}

impl FamilyInfo {
    pub fn group(&self, name: &str) -> Option<u32> {
        self.groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }
}

/// Reads the nlctrl attributes we need, skipping any others.
pub fn parse_family(attrs: &[u8]) -> FamilyInfo {
    let mut info = FamilyInfo::default();
    for nla in NlasIterator::new(attrs).map_while(|r| r.ok()) {
        match nla.kind() {
            CTRL_ATTR_FAMILY_ID => info.id = parse_u16(nla.value()).unwrap_or(0),
            CTRL_ATTR_FAMILY_NAME => info.name = parse_string(nla.value()).unwrap_or_default(),
            CTRL_ATTR_MCAST_GROUPS => {
                // A nest of nests, one per group, each with a name and an id.
                for grp in NlasIterator::new(nla.value()).map_while(|r| r.ok()) {
                    let (mut name, mut id) = (None, None);
                    for a in NlasIterator::new(grp.value()).map_while(|r| r.ok()) {
                        match a.kind() {
                            CTRL_ATTR_MCAST_GRP_NAME => name = parse_string(a.value()).ok(),
                            CTRL_ATTR_MCAST_GRP_ID => id = parse_u32(a.value()).ok(),
                            _ => {}
                        }
                    }
                    if let (Some(name), Some(id)) = (name, id) {
                        info.groups.push((name, id));
                    }
                }
            }
            _ => {}
        }
    }
    info
}

/// A CTRL_CMD_GETFAMILY request for `name`.
pub fn getfamily_request(name: &str, seq: u32) -> Vec<u8> {
    let genl = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(name.to_string())],
    });
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(genl));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// Outcome of reading a datagram while waiting for a GETFAMILY reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolve {
    Found(FamilyInfo),
    /// ENOENT: no such family registered (module not loaded).
    Missing,
    /// Nothing in this datagram answers request `seq`.
    Pending,
}

pub fn parse_getfamily_reply(datagram: &[u8], seq: u32, name: &str) -> Result<Resolve> {
    for msg in parse_datagram(datagram) {
        match msg {
            Msg::Genl {
                family: GENL_ID_CTRL,
                seq: s,
                attrs,
                ..
            } if s == seq => {
                return Ok(Resolve::Found(parse_family(&attrs)));
            }
            Msg::Error { seq: s, code } if s == seq && code == -libc::ENOENT => {
                return Ok(Resolve::Missing)
            }
            Msg::Error { seq: s, code } if s == seq && code != 0 => {
                return Err(Error::os(
                    format!("resolve generic netlink family {name}"),
                    -code,
                ));
            }
            _ => {}
        }
    }
    Ok(Resolve::Pending)
}

/// What an nlctrl notification means for the family we follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrlNote {
    /// It was unregistered, or lost a group: our membership is gone.
    Gone,
    /// It (or a group of it) was registered.
    Appeared,
    Unrelated,
}

pub fn classify_ctrl(cmd: u8, attrs: &[u8], family: &str) -> CtrlNote {
    if parse_family(attrs).name != family {
        return CtrlNote::Unrelated;
    }
    match cmd {
        CTRL_CMD_DELFAMILY | CTRL_CMD_DELMCAST_GRP => CtrlNote::Gone,
        CTRL_CMD_NEWFAMILY | CTRL_CMD_NEWMCAST_GRP => CtrlNote::Appeared,
        _ => CtrlNote::Unrelated,
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use netlink_packet_core::Emitable;
    use netlink_packet_generic::ctrl::nlas::McastGrpAttrs;

    /// A netlink message as the kernel sends it: nlmsghdr, genlmsghdr, attrs.
    pub fn nlmsg(msg_type: u16, cmd: u8, seq: u32, attrs: &[u8]) -> Vec<u8> {
        let len = 16 + 4 + attrs.len();
        let mut b = Vec::new();
        b.extend_from_slice(&(len as u32).to_ne_bytes());
        b.extend_from_slice(&msg_type.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&[cmd, 1, 0, 0]);
        b.extend_from_slice(attrs);
        b.resize(len.next_multiple_of(4), 0);
        b
    }

    pub fn nlmsg_error(seq: u32, errno: i32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&(-errno).to_ne_bytes());
        b.extend_from_slice(&[0; 16]); // the request's header, echoed
        b
    }

    /// nlctrl attributes describing a family, as the kernel's
    /// ctrl_fill_info() lays them out (emitted with netlink-packet-generic).
    pub fn family_attrs(id: u16, name: &str, groups: &[(&str, u32)]) -> Vec<u8> {
        let mut nlas = vec![
            GenlCtrlAttrs::FamilyName(name.into()),
            GenlCtrlAttrs::FamilyId(id),
            GenlCtrlAttrs::Version(1),
            GenlCtrlAttrs::HdrSize(0),
            GenlCtrlAttrs::MaxAttr(7),
        ];
        if !groups.is_empty() {
            nlas.push(GenlCtrlAttrs::McastGroups(
                groups
                    .iter()
                    .map(|(n, i)| vec![McastGrpAttrs::Id(*i), McastGrpAttrs::Name((*n).into())])
                    .collect(),
            ));
        }
        let mut buf = vec![0; nlas.as_slice().buffer_len()];
        nlas.as_slice().emit(&mut buf);
        buf
    }

    #[test]
    fn request_is_a_getfamily_for_the_name() {
        let req = getfamily_request("kvm_pfi", 7);
        let msgs = parse_datagram(&req);
        let [Msg::Genl {
            family,
            cmd,
            seq,
            attrs,
        }] = msgs.as_slice()
        else {
            panic!("{msgs:?}")
        };
        assert_eq!(
            (*family, *cmd, *seq),
            (
                GENL_ID_CTRL,
                netlink_packet_generic::constants::CTRL_CMD_GETFAMILY,
                7
            )
        );
        assert_eq!(parse_family(attrs).name, "kvm_pfi");
        // NLM_F_REQUEST set, version 2 of nlctrl
        assert_eq!(
            u16::from_ne_bytes([req[6], req[7]]) & NLM_F_REQUEST,
            NLM_F_REQUEST
        );
    }

    #[test]
    fn reply_gives_family_and_group_ids() {
        let attrs = family_attrs(0x1d, "kvm_pfi", &[("events", 9), ("other", 10)]);
        let reply = nlmsg(GENL_ID_CTRL, CTRL_CMD_NEWFAMILY, 7, &attrs);
        let Resolve::Found(info) = parse_getfamily_reply(&reply, 7, "kvm_pfi").unwrap() else {
            panic!()
        };
        assert_eq!(info.id, 0x1d);
        assert_eq!(info.name, "kvm_pfi");
        assert_eq!(info.group("events"), Some(9));
        assert_eq!(info.group("other"), Some(10));
        assert_eq!(info.group("nope"), None);
        // A reply to another request is not ours.
        assert_eq!(
            parse_getfamily_reply(&reply, 8, "kvm_pfi").unwrap(),
            Resolve::Pending
        );
    }

    #[test]
    fn unknown_ctrl_attributes_are_skipped() {
        let mut attrs = crate::events::tests::nla(200, &[1, 2, 3]);
        attrs.extend(family_attrs(42, "kvm_pfi", &[("events", 3)]));
        attrs.extend(crate::events::tests::nla(201, &[]));
        let info = parse_family(&attrs);
        assert_eq!((info.id, info.group("events")), (42, Some(3)));
    }

    #[test]
    fn enoent_means_missing_other_errors_fail() {
        let reply = nlmsg_error(3, libc::ENOENT);
        assert_eq!(
            parse_getfamily_reply(&reply, 3, "kvm_pfi").unwrap(),
            Resolve::Missing
        );
        let err = parse_getfamily_reply(&nlmsg_error(3, libc::EPERM), 3, "kvm_pfi").unwrap_err();
        assert_eq!(
            err.to_string(),
            "resolve generic netlink family kvm_pfi: Operation not permitted"
        );
    }

    #[test]
    fn datagram_with_several_messages() {
        let mut d = nlmsg(30, 1, 0, &crate::events::tests::nla(1, &5u32.to_ne_bytes()));
        d.extend(nlmsg(30, 2, 0, &[]));
        d.extend([1, 2, 3]); // trailing garbage is ignored
        let msgs = parse_datagram(&d);
        assert_eq!(msgs.len(), 2);
        assert!(matches!(
            &msgs[1],
            Msg::Genl {
                family: 30,
                cmd: 2,
                ..
            }
        ));
    }

    #[test]
    fn notifications_about_our_family() {
        let ours = family_attrs(30, "kvm_pfi", &[("events", 9)]);
        let theirs = family_attrs(31, "other", &[]);
        assert_eq!(
            classify_ctrl(CTRL_CMD_DELFAMILY, &ours, "kvm_pfi"),
            CtrlNote::Gone
        );
        assert_eq!(
            classify_ctrl(CTRL_CMD_DELMCAST_GRP, &ours, "kvm_pfi"),
            CtrlNote::Gone
        );
        assert_eq!(
            classify_ctrl(CTRL_CMD_NEWFAMILY, &ours, "kvm_pfi"),
            CtrlNote::Appeared
        );
        assert_eq!(
            classify_ctrl(CTRL_CMD_NEWMCAST_GRP, &ours, "kvm_pfi"),
            CtrlNote::Appeared
        );
        assert_eq!(
            classify_ctrl(CTRL_CMD_DELFAMILY, &theirs, "kvm_pfi"),
            CtrlNote::Unrelated
        );
    }
}
