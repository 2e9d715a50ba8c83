#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make nested-guest`: try to boot a real Linux guest (the test kernel, with
# a busybox + zram + pfi_guest_swap initramfs) under QEMU inside the test
# VM, and report how far it got. Not part of `make test`: it does not boot
# reliably under TCG (Documentation/testing.rst, "Real Linux guests"); this
# reproduces that, and is where the real-guest tests start once it does.
source "$(dirname "$0")/common.sh"

KDIR="${KDIR:-$KVM_PFI_CACHE/build}"
WORK="$KVM_PFI_CACHE/nested-guest"
ROOT="$WORK/root"
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,proc,sys,dev,lib/modules}
cp /bin/busybox "$ROOT/bin/"
for c in sh mount cat poweroff insmod mkswap swapon free; do ln -sf busybox "$ROOT/bin/$c"; done
cp "$KDIR/drivers/block/zram/zram.ko" "$ROOT/lib/modules/"
gcc -O2 -static -Wall -o "$ROOT/pfi_guest_swap" "$KVM_PFI_ROOT/selftests/guest/pfi_guest_swap.c"
cat >"$ROOT/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "INIT: up $(cat /proc/uptime)"
insmod /lib/modules/zram.ko && echo 64M >/sys/block/zram0/disksize &&
	mkswap /dev/zram0 >/dev/null && swapon /dev/zram0 && echo "INIT: zram swap on"
/pfi_guest_swap </dev/null
echo "INIT: done $(cat /proc/uptime)"
poweroff -f
INIT
chmod +x "$ROOT/init"
(cd "$ROOT" && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"$WORK/initramfs.gz")

run_vng "$KDIR" "rmmod kvm_amd 2>/dev/null; modprobe kvm_amd ${KVM_AMD_PARAMS:-}; \
timeout ${NESTED_TIMEOUT:-90} qemu-system-x86_64 -M pc -accel kvm -cpu host,-xsave -m 256M -smp 1 \
-kernel $KDIR/arch/x86/boot/bzImage -initrd $WORK/initramfs.gz -display none -nodefaults -no-reboot \
-append 'console=ttyS0 earlyprintk=serial,ttyS0 panic=-1 nokaslr no_timer_check tsc=reliable' \
-serial file:/tmp/serial; echo \"qemu exit status \$?\"; cat /tmp/serial; \
if grep -q 'INIT: done' /tmp/serial; then echo 'nested guest: booted and ran its test program'; \
else echo 'nested guest: did not reach the end of its init'; fi"
