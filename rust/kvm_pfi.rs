// SPDX-License-Identifier: GPL-2.0

//! kvm-pfi: memory introspection of KVM guests from the host.
//!
//! Module root: wiring only. See Documentation/design.rst for the data flow.
//! Fields of [`KvmPfi`] are registrations; they are dropped in declaration
//! order on unload, so the device goes first (no new requests), then the
//! reaper, the probes, the attached VMs (their last events), the signature
//! set; then, with every producer of events gone, the sink stage delivers
//! what is left and stops, and the sinks and the outbox go last.

use kernel::miscdevice::{
    MiscDeviceOptions,
    MiscDeviceRegistration, //
};
use kernel::prelude::*;

mod attach;
mod bindings;
mod control;
mod events;
mod guest_mem;
mod hooks;
mod linux_guest;
mod netlink;
/// Kernel-independent logic, shared with the host crate `pfi_core`.
#[path = "pfi_core/mod.rs"]
pub mod pfi_core;
mod probe_gate;
mod protect;
mod reaper;
mod remote_walks;
mod report;
mod scan;
mod sigs;
mod sinks;
mod stream;
mod sweep;
mod target_lifecycle;
mod targets;
mod tracking;
mod tracking_changes;
mod vendor;
mod vm;
mod work_end;

module! {
    type: KvmPfi,
    name: "kvm_pfi",
    authors: ["kvm-pfi developers"],
    description: "KVM guest memory introspection: swapped-out page access by #PF injection",
    license: "GPL",
    params: {
        pf_timeout_ms: u32 {
            default: 1000,
            description: "Re-inject a #PF after this many ms without the page (default per target; 1-60000)",
        },
        track_page_tables: bool {
            default: false,
            description: "Write-track the page-table pages of target walks (see Documentation/design.rst)",
        },
        pf_max_tries: u32 {
            default: 3,
            description: "#PFs injected per page before it fails (default per target; 1-100)",
        },
        write_reports_per_sec: u32 {
            default: 10000,
            description: "write-attempt reports per VM and second; more writes are restored and counted only (1-1000000)",
        },
    },
}

/// `/dev/kvm_pfi`: the UAPI header's name for it.
const DEVICE_NAME: &kernel::str::CStr = match kernel::str::CStr::from_bytes_with_nul(
    bindings::uapi::KVM_PFI_DEVICE_NAME,
) {
    Ok(name) => name,
    Err(_) => panic!("KVM_PFI_DEVICE_NAME is not a C string"),
};

#[pin_data]
struct KvmPfi {
    _parameters: control::Parameters,
    #[pin]
    device: MiscDeviceRegistration<control::PfiFile>,
    _reaper: reaper::ReaperHandle,
    _probes: hooks::Probes,
    _attachments: attach::Attachments,
    _sigs: sigs::Sigs,
    _sinks: sinks::Sinks,
    _readers: stream::Readers,
    _netlink: netlink::Registration,
    _outbox: events::Outbox,
}

impl kernel::InPlaceModule for KvmPfi {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // Built in dependency order; the initializer drops what it built if
        // a later step fails.
        let parameters = control::Parameters::check();
        let outbox = events::Outbox::new();
        let netlink = netlink::Registration::register();
        let readers = stream::Readers::new();
        let sigs = sigs::Sigs::new();
        let attachments = attach::Attachments::new();
        try_pin_init!(Self {
            _parameters: parameters?,
            _outbox: outbox?,
            _netlink: netlink?,
            _readers: readers,
            _sinks: sinks::Sinks::start()?,
            _sigs: sigs,
            _attachments: attachments,
            _probes: hooks::Probes::register()?,
            _reaper: reaper::ReaperHandle::start()?,
            device <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: DEVICE_NAME,
            }),
        })
    }
}
