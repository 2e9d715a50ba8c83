#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `kvm-pfi watch --format journald|syslog|ocsf` against the real receivers
# (selftests/formats_test.py). Host side, root.
source "$(dirname "$0")/common.sh"

export KVM_PFI_TOOL="${CARGO_TARGET_DIR:-$KVM_PFI_CACHE/target}/release/kvm-pfi"
[ -x "$KVM_PFI_TOOL" ] || die "missing $KVM_PFI_TOOL: run 'make tool'"
schema=$(ls "$VENV_DIR"/lib/python3*/site-packages/ocsf/schemas/v1_5_0.json 2>/dev/null | head -1)
[ -n "$schema" ] || die "no OCSF schema in $VENV_DIR: run 'make deps'"
export KVM_PFI_OCSF_SCHEMA="$schema"
export KVM_PFI_ROOT
exec timeout 300 /usr/bin/python3 "$KVM_PFI_ROOT/selftests/formats_test.py"
