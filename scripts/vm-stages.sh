#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The VM stages of `make test`, side by side: the suite on AMD SVM (QEMU's
# TCG, scripts/vm-test.sh) and on Intel VMX (Bochs, scripts/vmx-test.sh).
# Each emulator runs its guest on one host thread, so on two cores the two
# stages together take as long as the slower one. Each stage's KTAP goes to
# RESULTS/<stage>.ktap; the VMX stage's output is printed after the SVM
# stage's, whole, so the two never interleave. Fails if either stage does.
# See Documentation/testing.rst.
source "$(dirname "$0")/common.sh"

RESULTS="${1:?usage: vm-stages.sh RESULTS-DIR}"
mkdir -p "$RESULTS"

t0=$SECONDS
log "VMX stage started beside the SVM stage (its output follows the SVM stage's)"
# In its own process group (setsid), so that stopping it stops its Bochs.
KVM_PFI_RESULTS="$RESULTS/vmx.ktap" setsid "$KVM_PFI_ROOT/scripts/vmx-test.sh" >"$RESULTS/vmx.log" 2>&1 &
vmx=$!
# Stop the VMX stage (and its Bochs) if this script is stopped.
trap 'kill -- -$vmx 2>/dev/null || true' INT TERM EXIT

svm_rc=0
KVM_PFI_RESULTS="$RESULTS/svm.ktap" "$KVM_PFI_ROOT/scripts/vm-test.sh" || svm_rc=$?
log "SVM stage: exit $svm_rc after $((SECONDS - t0)) s"

vmx_rc=0
wait "$vmx" || vmx_rc=$?
trap - INT TERM EXIT
log "VMX stage (Intel VMX under Bochs), output:"
cat "$RESULTS/vmx.log"
log "VMX stage: exit $vmx_rc; both stages took $((SECONDS - t0)) s"
[ "$svm_rc" -eq 0 ] && [ "$vmx_rc" -eq 0 ]
