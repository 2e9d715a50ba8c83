#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The emulator the test VM runs under: Debian's own QEMU, rebuilt from its
# source package with the project's patches (scripts/qemu-patches/, in
# `git format-patch` form), x86_64 system emulator only. The version is the
# one of the machine's qemu-system-x86 package; the build folder is keyed by
# that version and the hash of the patches and of this script's configure
# line, so an unchanged set reuses the previous build.
#
# Why: QEMU's emulated SVM (TCG) delivers an EVENTINJ external interrupt
# twice in some cases, which hangs Linux guests nested in the test VM
# (scripts/qemu-patches/0001-*.patch says how; Documentation/testing.rst).
source "$(dirname "$0")/common.sh"

VERSION="$(qemu_version)"
SRC="$KVM_PFI_CACHE/qemu-src/$VERSION"
OUT="$(qemu_dir)"
JOBS="${JOBS:-$(($(nproc) + 1))}"

# -- source ------------------------------------------------------------------
# Debian's source package, through a private apt source list: deb-src lines
# for the mirrors and suites this machine is configured with (only the type
# differs), so nothing about a registry is written into the repository.
fetch_source() {
	local apt_dir="$KVM_PFI_CACHE/apt-src" f
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/parts" "$apt_dir/dl"
	{
		# deb822 stanzas (Types/URIs/Suites/Components/Signed-By).
		awk 'function flush() { if (t ~ /(^| )deb( |$)/ && u != "") for (i = 1; i <= ns; i++)
				printf "deb-src%s %s %s %s\n", (k != "" ? " [signed-by=" k "]" : ""), u, s[i], c;
				t = u = c = k = ""; ns = 0 }
			/^[ \t]*$/ { flush(); next }
			/^Types:/ { t = substr($0, 7) } /^URIs:/ { u = $2 } /^Components:/ { c = substr($0, 13) }
			/^Signed-By:/ { k = $2 } /^Suites:/ { ns = split(substr($0, 8), s, " ") }
			END { flush() }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
		# one-line sources.list entries.
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
			[ -f "$f" ] && awk '$1 == "deb" { $1 = "deb-src"; print }' "$f"
		done
	} | grep -E '^deb-src .*(bookworm|trixie|forky|sid)' | sort -u >"$apt_dir/sources.list" || true
	[ -s "$apt_dir/sources.list" ] || die "no Debian mirror configured in /etc/apt"
	local aptopts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list"
		-o "Dir::Etc::sourceparts=$apt_dir/parts"
		-o "Dir::State::Lists=$apt_dir/lists" -o APT::Sandbox::User=root)
	log "fetching Debian's qemu $VERSION source package"
	apt-get -q "${aptopts[@]}" update >/dev/null
	rm -rf "$apt_dir/dl" && mkdir -p "$apt_dir/dl"
	(cd "$apt_dir/dl" && apt-get -q "${aptopts[@]}" source --download-only "qemu=$VERSION" >/dev/null) ||
		die "Debian's qemu source package $VERSION is not on the configured mirrors"
	local tmp
	tmp="$(mktemp -d "$KVM_PFI_CACHE/unpack.XXXX")"
	# dpkg-source applies Debian's own patch series (format 3.0 (quilt)).
	# apt checked the files against the signed Release file; dpkg-source only
	# lacks the uploader's key for the .dsc signature and says so on stderr.
	dpkg-source -q -x "$apt_dir"/dl/qemu_*.dsc "$tmp/qemu" >/dev/null 2>&1 ||
		die "dpkg-source could not unpack $(ls "$apt_dir"/dl/qemu_*.dsc)"
	rm -rf "$SRC"
	mkdir -p "$(dirname "$SRC")"
	mv "$tmp/qemu" "$SRC"
	rm -rf "$tmp" "$apt_dir/dl"
	touch "$SRC/.kvm-pfi-unpacked"
}
[ -f "$SRC/.kvm-pfi-unpacked" ] || fetch_source
[ "${1:-}" = --fetch-only ] && exit 0

# -- build -------------------------------------------------------------------
build() {
	local tree="$OUT.tree" p start=$SECONDS
	log "building QEMU $VERSION (x86_64-softmmu, -j$JOBS) in $OUT; takes about 10 minutes on 2 cores"
	rm -rf "$tree" "$OUT"
	cp -a "$SRC" "$tree"
	for p in "$(qemu_patch_dir)"/*.patch; do
		log "applying $(basename "$p")"
		patch -d "$tree" -p1 -s --no-backup-if-mismatch <"$p"
	done
	mkdir -p "$tree/build"
	(cd "$tree/build" && ../configure "${QEMU_CONFIGURE[@]}" --prefix="$OUT" >configure.log 2>&1) ||
		{ tail -30 "$tree/build/configure.log" >&2; die "QEMU configure failed ($tree/build/configure.log)"; }
	ninja -C "$tree/build" -j"$JOBS" qemu-system-x86_64 >"$tree/build/ninja.log" 2>&1 ||
		{ tail -30 "$tree/build/ninja.log" >&2; die "QEMU build failed ($tree/build/ninja.log)"; }
	mkdir -p "$OUT/bin"
	cp "$tree/build/qemu-system-x86_64" "$OUT/bin/"
	# The option ROMs and keymaps stay Debian's (firmware path below); only
	# the emulator binary is ours.
	rm -rf "$tree"
	"$OUT/bin/qemu-system-x86_64" --version | head -1 >"$OUT/.kvm-pfi-built"
	log "QEMU built in $((SECONDS - start)) s"
}
[ -f "$OUT/.kvm-pfi-built" ] || build
log "emulator ready: $(cat "$OUT/.kvm-pfi-built") in $OUT/bin"
