#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The real-guest tests: a Linux guest (scripts/guest-kernel.sh) with zram
# swap and selftests/guest/pfi_guest_swap.c in its initramfs, booted by
# QEMU under KVM inside the test VM; selftests/real_guest.py drives it.
#
#   scripts/real-guest.sh [CASE ...]   the end-to-end cases (default: all;
#                                      `make e2e`)
#   scripts/real-guest.sh --boots N    boot figures over N boots
#   scripts/real-guest.sh --initramfs  only build the guest's kernel and initramfs
#
# Needs the module, tool and selftests built (make module tool selftests)
# for the cases, and the patched emulator (scripts/qemu.sh): unpatched
# QEMU TCG hangs nested Linux guests (Documentation/testing.rst).
source "$(dirname "$0")/common.sh"

KDIR="${KDIR:-$KVM_PFI_CACHE/build}"
GUEST="$(guest_kernel_dir)"
INITRD="$(guest_initramfs)"
[ -f "$GUEST/.kvm-pfi-built" ] || "$KVM_PFI_ROOT/scripts/guest-kernel.sh"

# The initramfs, built once per content (guest_initramfs names it).
build_initramfs() {
	mkdir -p "$(dirname "$INITRD")"
	ROOT="$(mktemp -d "$INITRD.XXXXXX")"
	trap 'rm -rf "$ROOT" "$ROOT.cpio"' EXIT
	mkdir -p "$ROOT"/{bin,proc,sys,dev,tmp}
	cp /bin/busybox "$ROOT/bin/"
	for c in sh mount cat grep sleep stty mkswap swapon reboot; do ln -sf busybox "$ROOT/bin/$c"; done
	gcc -O2 -static -Wall -o "$ROOT/pfi_guest_swap" "$KVM_PFI_ROOT/selftests/guest/pfi_guest_swap.c"
	cat >"$ROOT/init" <<'INIT'
#!/bin/sh
# pfi.procs=N on the command line: run the test program with N workers,
# its commands from ttyS1; without it, only boot, set up swap and power off.
mount -t proc proc /proc
# The command line's loglevel=5 kept the boot log off the slow console;
# from here on every kernel message goes there (segfaults, traps).
echo 7 >/proc/sys/kernel/printk
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "INIT: up $(cat /proc/uptime)"
echo 64M >/sys/block/zram0/disksize && mkswap /dev/zram0 >/dev/null &&
	swapon /dev/zram0 && echo "INIT: zram swap on"
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	pfi.procs=*)
		stty -F /dev/ttyS1 -echo
		/pfi_guest_swap "${arg#pfi.procs=}" </dev/ttyS1
		echo "INIT: program status $?" ;;
	esac
done
echo "INIT: $(grep -E '^pswp(in|out) ' /proc/vmstat | tr '\n' ' ')"
echo "INIT: done $(cat /proc/uptime)"
reboot -f
INIT
	chmod +x "$ROOT/init"
	# Not compressed: the guest kernel unpacks it in less time (measured,
	# Documentation/testing.rst). Made whole in one rename.
	(cd "$ROOT" && find . | cpio -o -H newc 2>/dev/null >"$ROOT.cpio")
	mv "$ROOT.cpio" "$INITRD"
	rm -rf "$ROOT"
	trap - EXIT
}
[ -f "$INITRD" ] || build_initramfs
[ "${1:-}" = --initramfs ] && exit 0

# The test VM's own suite runner: loads the modules, runs real_guest.py,
# checks the module unloads and the test VM's log is clean.
export KVM_PFI_GUEST_KERNEL="$GUEST/arch/x86/boot/bzImage" KVM_PFI_GUEST_INITRD="$INITRD"
export KVM_PFI_GUEST_BTF="$(kernel_btf "$GUEST")" KVM_PFI_GUEST_SYSTEM_MAP="$GUEST/System.map"
export KVM_PFI_REAL_GUEST_ARGS="${*:-swapped_pages memset prot_none two_processes exit_pending}"
# Each boot or case is one nested boot (1.5 to 4 minutes, more under load;
# a hung boot is given up after 600 s): time limits to match.
set -- $KVM_PFI_REAL_GUEST_ARGS
if [ "$1" = --boots ]; then units=$2; else units=$#; fi
export KVM_PFI_REAL_GUEST_TIMEOUT="${KVM_PFI_REAL_GUEST_TIMEOUT:-$((units * 700 + 300))}"
export KVM_PFI_VM_TIMEOUT="${KVM_PFI_VM_TIMEOUT:-$((KVM_PFI_REAL_GUEST_TIMEOUT + 600))}"
KVM_PFI_ONLY="${KVM_PFI_ONLY:-real_guest}" exec "$KVM_PFI_ROOT/scripts/vm-test.sh"
