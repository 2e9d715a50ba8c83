#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Packaging checks, host side: `make install` into a staging DESTDIR puts
# every file where it belongs (and the man pages render), and `dkms build`
# of dkms.conf builds kvm_pfi.ko against the test kernel's tree, in a
# private DKMS tree (nothing is installed on this machine).
# Prints "N passed, M failed".
source "$(dirname "$0")/common.sh"

KDIR="${KDIR:-$KVM_PFI_CACHE/build}"
passed=0 failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
fail() { echo "not ok - $1"; failed=$((failed + 1)); }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kver=$(make -s -C "$KDIR" kernelrelease)

# make install, staged.
dest="$work/dest"
if make -s -C "$KVM_PFI_ROOT" install DESTDIR="$dest" PREFIX=/usr >"$work/install.log" 2>&1; then
	ok "make install exits 0"
else
	sed 's/^/# /' "$work/install.log" | tail -20
	fail "make install exits 0"
fi
for f in "lib/modules/$kver/updates/kvm_pfi.ko" usr/bin/kvm-pfi \
	usr/share/man/man1/kvm-pfi.1 usr/share/man/man1/kvm-pfi-watch.1 \
	usr/share/man/man1/kvm-pfi-target-add.1 \
	usr/share/bash-completion/completions/kvm-pfi usr/share/zsh/site-functions/_kvm-pfi \
	usr/share/fish/vendor_completions.d/kvm-pfi.fish usr/lib/systemd/system/kvm-pfi-watch.service \
	usr/share/doc/kvm-pfi/examples/rsyslog-kvm-pfi.conf; do
	if [ -s "$dest/$f" ]; then ok "installed $f"; else fail "installed $f"; fi
done
# The module is the one built here; modinfo reads what modpost recorded.
if [ "$(modinfo -F name "$dest/lib/modules/$kver/updates/kvm_pfi.ko" 2>/dev/null)" = kvm_pfi ] &&
	[ "$(modinfo -F vermagic "$dest/lib/modules/$kver/updates/kvm_pfi.ko" | awk '{print $1}')" = "$kver" ]; then
	ok "installed module is kvm_pfi for $kver"
else
	fail "installed module is kvm_pfi for $kver"
fi
# man renders the generated pages; the watch page documents --format.
if man -l "$dest/usr/share/man/man1/kvm-pfi-watch.1" 2>/dev/null | grep -q -- "--format"; then
	ok "man kvm-pfi-watch renders and documents --format"
else
	fail "man kvm-pfi-watch renders and documents --format"
fi
# bash parses the completion script and completes a subcommand (through the
# function the script registers for kvm-pfi).
if bash -c "source '$dest/usr/share/bash-completion/completions/kvm-pfi'; f=\$(complete -p kvm-pfi | sed -E 's/.*-F ([^ ]+).*/\\1/'); COMP_WORDS=(kvm-pfi wat); COMP_CWORD=1; \$f kvm-pfi wat kvm-pfi; printf '%s\n' \"\${COMPREPLY[@]}\"" 2>/dev/null | grep -qx watch; then
	ok "bash completion completes 'wat' to 'watch'"
else
	fail "bash completion completes 'wat' to 'watch'"
fi
if grep -q "^ExecStart=/usr/bin/kvm-pfi watch" "$dest/usr/lib/systemd/system/kvm-pfi-watch.service"; then
	ok "unit names the installed tool"
else
	fail "unit names the installed tool"
fi

# systemd's own parser on the unit (ExecStart pointed at the staged tool;
# systemd need not be running).
unit="$work/kvm-pfi-watch.service"
sed "s|^ExecStart=/usr/bin/kvm-pfi|ExecStart=$dest/usr/bin/kvm-pfi|" \
	"$dest/usr/lib/systemd/system/kvm-pfi-watch.service" >"$unit"
if out=$(systemd-analyze verify --man=no "$unit" 2>&1) && [ -z "$out" ]; then
	ok "systemd-analyze verify kvm-pfi-watch.service"
else
	echo "$out" | sed 's/^/# /'
	fail "systemd-analyze verify kvm-pfi-watch.service"
fi

# dkms build, in a private tree, against the test kernel.
ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$KVM_PFI_ROOT/dkms.conf")
src="$work/src/kvm-pfi-$ver"
mkdir -p "$src" "$work/dkms"
git -C "$KVM_PFI_ROOT" ls-files -z | (cd "$KVM_PFI_ROOT" && xargs -0 cp --parents -t "$src")
# Without this checkout's exported build folders: dkms.conf's CLEAN runs
# `make clean` in the copy, which would remove this checkout's selftests
# (KVM_PFI_TESTS, exported by the Makefile) under a run that uses them.
dk=(env -u KVM_PFI_TESTS dkms --dkmstree "$work/dkms" --sourcetree "$work/src" --installtree "$work/inst")
if "${dk[@]}" add -m kvm-pfi -v "$ver" >"$work/dkms.log" 2>&1 &&
	"${dk[@]}" build -m kvm-pfi -v "$ver" -k "$kver" --kernelsourcedir "$(readlink -f "$KDIR")" \
		>>"$work/dkms.log" 2>&1; then
	ok "dkms build against $kver"
else
	sed 's/^/# /' "$work/dkms.log" | tail -30
	find "$work/dkms" -name make.log -exec tail -30 {} \; | sed 's/^/# /'
	fail "dkms build against $kver"
fi
built=$(find "$work/dkms" -name 'kvm_pfi.ko*' -path '*/module/*' | head -1)
if [ -n "$built" ] && [ "$(modinfo -F vermagic "$built" | awk '{print $1}')" = "$kver" ]; then
	ok "dkms built kvm_pfi.ko for $kver"
else
	fail "dkms built kvm_pfi.ko for $kver"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
