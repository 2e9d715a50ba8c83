#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Regenerate include/uapi/linux/kvm_pfi_netlink.h from the netlink spec with
# the kernel tree's YNL generator, as the kernel's tools/net/ynl/ynl-regen.sh
# does for in-tree families. The generated header is committed.
source "$(dirname "$0")/common.sh"
SRC="$(kernel_src_dir)"
[ -f "$SRC/tools/net/ynl/pyynl/ynl_gen_c.py" ] || die "kernel source missing: run scripts/kernel.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The generator finds its schema beside the spec's folder and names the spec
# relative to the closest folder holding MAINTAINERS: lay out a tiny tree.
mkdir -p "$tmp/Documentation/netlink/specs"
touch "$tmp/MAINTAINERS"
cp "$SRC"/Documentation/netlink/genetlink*.yaml "$tmp/Documentation/netlink/"
cp "$KVM_PFI_ROOT/Documentation/netlink/specs/kvm_pfi.yaml" "$tmp/Documentation/netlink/specs/"
/usr/bin/python3 "$SRC/tools/net/ynl/pyynl/ynl_gen_c.py" --mode uapi --header \
	--spec "$tmp/Documentation/netlink/specs/kvm_pfi.yaml" -o "$tmp/out.h"
sed 's|tools/net/ynl/ynl-regen.sh|scripts/ynl-regen.sh|' "$tmp/out.h" \
	>"$KVM_PFI_ROOT/include/uapi/linux/kvm_pfi_netlink.h"
log "regenerated include/uapi/linux/kvm_pfi_netlink.h"
