#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The nested guest's kernel for the real-guest tests: tinyconfig plus
# scripts/guest-kernel.config, from the test kernel's source tree (run
# scripts/kernel.sh first), built in the cache folder in
# guest-build-<series>-<hash of the fragment>; an unchanged fragment reuses
# the previous build. bzImage only, no modules; and the kernel's BTF
# (vmlinux.btf, by pahole from its DWARF) beside System.map, for its Linux
# profile.
source "$(dirname "$0")/common.sh"

SRC="$(kernel_src_dir)"
OUT="$(guest_kernel_dir)"
JOBS="${JOBS:-$(($(nproc) + 1))}"
[ -f "$SRC/Makefile" ] || die "no kernel source in $SRC: run scripts/kernel.sh"
FRAG="$KVM_PFI_ROOT/scripts/guest-kernel.config"
KMAKE=(make -s -C "$SRC" O="$OUT")

if [ ! -f "$OUT/.kvm-pfi-built" ] || ! cmp -s "$FRAG" "$OUT/.kvm-pfi-fragment"; then
	rm -rf "$OUT"
	mkdir -p "$OUT"
	log "configuring the guest kernel in $OUT"
	"${KMAKE[@]}" tinyconfig >/dev/null
	(cd "$OUT" && "$SRC/scripts/kconfig/merge_config.sh" -m .config "$FRAG" >/dev/null)
	"${KMAKE[@]}" olddefconfig >/dev/null
	# merge_config warns but does not fail on a lost symbol: check each one.
	while read -r line; do
		case "$line" in
		CONFIG_*=*) grep -qx "$line" "$OUT/.config" || die "guest kernel: $line did not survive olddefconfig" ;;
		"# CONFIG_"*" is not set")
			line="${line#\# }"
			! grep -q "^${line%% *}=" "$OUT/.config" || die "guest kernel: ${line%% *} is set" ;;
		esac
	done <"$FRAG"
	log "building the guest kernel (bzImage, -j$JOBS)"
	"${KMAKE[@]}" -j"$JOBS" bzImage
	log "guest kernel built in $SECONDS s"
	cp "$FRAG" "$OUT/.kvm-pfi-fragment"
	touch "$OUT/.kvm-pfi-built"
fi
make_kernel_btf "$OUT"
log "guest kernel ready: $OUT/arch/x86/boot/bzImage"
