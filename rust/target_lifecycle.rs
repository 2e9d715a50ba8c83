// SPDX-License-Identifier: GPL-2.0

//! Adding and removing a target: the one way either happens, for
//! `KVM_PFI_TARGET_ADD`/`KVM_PFI_TARGET_REMOVE` (`control.rs`) and for the
//! targets of rules (`linux_guest::rules`). Process context.

use kernel::prelude::*;

use crate::events::{
    self,
    Record, //
};
use crate::pfi_core::inject::InjectConfig;
use crate::targets::{
    Target,
    TargetSpec, //
};
use crate::tracking;
use crate::tracking_changes::TrackingChanges;
use crate::vm::AttachedVm;

/// Adds a target made from `spec` to `vm`, made by rule `rule_id` (0: none),
/// and announces it; returns its id. `process_mm` gives the `mm_struct` of
/// the process whose tables are at a VMA-checked target's root, if known:
/// its faults may then go at once (`targets::vma_gate`).
pub(crate) fn add(
    vm: &AttachedVm,
    spec: &TargetSpec,
    rule_id: u32,
    process_mm: impl FnOnce(u64) -> Option<u64>,
) -> Result<u32> {
    let id = vm.take_target_id()?;
    let mut target = spec.build(id)?;
    target.rule_id = rule_id;
    if let Some(root) = target.checked_root() {
        target.set_process_mm(process_mm(root));
    }
    let added = Record::target_added(vm.id, id, spec.flags, spec.cr3, spec.gva, spec.len);
    let r = {
        let mut targets = vm.targets.lock();
        let r = targets.insert(target);
        if r.is_ok() {
            // Under the lock: before any event of its pages.
            events::emit(added);
        }
        r
    };
    match r {
        Ok(()) => {
            // Walk the new pages at once, not only at the next exit; and
            // follow them from now on.
            vm.kick_report();
            crate::sweep::start(vm);
            Ok(id)
        }
        Err((e, target)) => {
            // Freed outside the spinlock.
            drop(target);
            Err(e)
        }
    }
}

/// Takes target `id` out of `vm`, stops tracking its frames (serialised with
/// the report work's tracking) and announces it; the caller frees it.
pub(crate) fn remove(vm: &AttachedVm, id: u32) -> Option<KBox<Target>> {
    let mut changes = TrackingChanges::begin(vm);
    let t = vm.targets.lock().remove(id)?;
    tracking::untrack(&mut changes, &t);
    drop(changes);
    events::emit(Record::target_removed(vm.id, id));
    Some(t)
}

/// Injection limits from the module parameters, which `Parameters::check`
/// found within the per-target limits at load.
pub(crate) fn default_config() -> InjectConfig {
    parameters_config().unwrap_or(InjectConfig::default_config())
}

/// The module parameters' injection limits, `None` if out of range.
pub(crate) fn parameters_config() -> Option<InjectConfig> {
    InjectConfig::checked(
        crate::module_parameters::pf_timeout_ms.value(),
        crate::module_parameters::pf_max_tries.value(),
    )
}
