#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Fetch Debian's linux-source package, configure it for virtme-ng + Rust +
# KVM modules + lock debugging (scripts/kernel.config), and build it in the
# cache folder. The build folder is keyed by kernel series and the hash of the
# fragment, so an unchanged fragment reuses the previous build.
source "$(dirname "$0")/common.sh"

SRC="$(kernel_src_dir)"
OUT="$(kernel_build_dir)"
JOBS="${JOBS:-$(($(nproc) + 1))}"

# -- source ------------------------------------------------------------------
fetch_source() {
	local apt_dir="$KVM_PFI_CACHE/apt" uri
	# Reuse the Debian mirror this machine is configured with; only the suite differs.
	uri="$(awk '/^URIs:/ {print $2} /^Suites:/ && / bookworm( |$)/ {found=1} found && /^$/ {exit}' \
		/etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
	[ -n "$uri" ] || uri="$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
	[ -n "$uri" ] || die "no Debian mirror configured in /etc/apt"
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/parts" "$apt_dir/debs"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $KERNEL_SUITE main" \
		>"$apt_dir/sources.list"
	local aptopts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list"
		-o "Dir::Etc::sourceparts=$apt_dir/parts"
		-o "Dir::State::Lists=$apt_dir/lists" -o APT::Sandbox::User=root)
	log "fetching $KERNEL_PKG from $KERNEL_SUITE"
	apt-get -q "${aptopts[@]}" update >/dev/null
	(cd "$apt_dir/debs" && apt-get -q "${aptopts[@]}" download "$KERNEL_PKG" >/dev/null)
	local deb tmp
	deb="$(ls -t "$apt_dir/debs/${KERNEL_PKG}_"*.deb | head -1)"
	tmp="$(mktemp -d "$KVM_PFI_CACHE/unpack.XXXX")"
	dpkg-deb -x "$deb" "$tmp"
	log "unpacking $(basename "$deb")"
	mkdir -p "$tmp/src"
	tar -C "$tmp/src" -xf "$tmp"/usr/src/linux-source-*.tar.*
	rm -rf "$SRC"
	mv "$tmp/src/"linux-source-* "$SRC"
	rm -rf "$tmp"
}
[ -f "$SRC/Makefile" ] || fetch_source
KVERSION="$(make -s -C "$SRC" kernelversion)"
case "$KVERSION" in "$KERNEL_SERIES".*) ;; *) die "unexpected kernel version $KVERSION in $SRC" ;; esac

KMAKE=(make -s -C "$SRC" O="$OUT" RUSTC="$KVM_PFI_RUSTC" BINDGEN="$(command -v bindgen)"
	LIBCLANG_PATH="$LIBCLANG_PATH" HOSTRUSTC="$KVM_PFI_RUSTC")

# -- configuration -----------------------------------------------------------
configure() {
	mkdir -p "$OUT"
	log "configuring $KVERSION in $OUT"
	"${KMAKE[@]}" x86_64_defconfig >/dev/null
	virtme-configkernel --dry-run --arch x86_64 >"$OUT/virtme.config"
	(cd "$OUT" && "$SRC/scripts/kconfig/merge_config.sh" -m .config virtme.config "$(kernel_fragment)" >/dev/null)
	"${KMAKE[@]}" olddefconfig >/dev/null
	# merge_config warns but does not fail on a lost symbol: check what we need.
	local sym
	for sym in RUST KVM_AMD KVM_EXTERNAL_WRITE_TRACKING PROVE_LOCKING DEBUG_ATOMIC_SLEEP ZRAM TRACEPOINTS; do
		grep -Eq "^CONFIG_${sym}=[ym]" "$OUT/.config" || die "CONFIG_$sym did not survive olddefconfig (is Rust available? run 'make rustavailable')"
	done
	cp "$(kernel_fragment)" "$OUT/.kvm-pfi-fragment"
}
if [ ! -f "$OUT/.config" ] || ! cmp -s "$(kernel_fragment)" "$OUT/.kvm-pfi-fragment"; then
	"${KMAKE[@]}" rustavailable >/dev/null || die "Rust toolchain not usable by the kernel; run scripts/toolchain.sh"
	configure
fi

# -- build -------------------------------------------------------------------
if [ ! -f "$OUT/.kvm-pfi-built" ] || [ "${KVM_PFI_FORCE_KBUILD:-0}" = 1 ]; then
	log "building $KVERSION (bzImage modules, -j$JOBS); first build takes about 15 minutes on 2 cores"
	rm -f "$OUT/.kvm-pfi-built"
	"${KMAKE[@]}" -j"$JOBS" bzImage modules
	# Headers for the selftests (KVM selftests include the sanitised UAPI).
	"${KMAKE[@]}" headers >/dev/null
	touch "$OUT/.kvm-pfi-built"
fi
# The BTF blob of this build (selftests/linux_walk.py), from its DWARF.
make_kernel_btf "$OUT"
# Keep a stable name for the current build, for humans and for KDIR defaults.
ln -sfn "$OUT" "$KVM_PFI_CACHE/build"
log "kernel ready: $KVERSION in $OUT"
