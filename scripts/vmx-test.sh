#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The suite on Intel VMX: QEMU's TCG emulates SVM only, Bochs (Debian's
# package) emulates VMX. Boots the test kernel under Bochs from an ISO
# (isolinux), with everything the tests need in its initramfs (Bochs has no
# virtio, no 9p, no direct kernel boot), runs selftests/run_in_vm.sh there
# (the runner of the SVM stage: same programs, same checks), and reads the
# result from the serial log (Bochs exits with status 1 whatever happens).
# See Documentation/testing.rst, "Intel VMX under Bochs".
#
# Environment: KDIR (kernel build dir), KVM_PFI_TESTS, KVM_PFI_TOOL, KVM_PFI_ONLY (as for
# vm-test.sh), KVM_PFI_VMX_TIMEOUT (seconds, default 1500), KVM_PFI_RESULTS
# (also keep the runner's output in this file), KVM_PFI_VMX_RUN (suite, the
# default, or bench: scripts/bench-in-vm.sh instead of the runner, for
# `make bench`).
source "$(dirname "$0")/common.sh"

KDIR="$(readlink -f "${KDIR:-$KVM_PFI_CACHE/build}")"
KO="$KVM_PFI_ROOT/kvm_pfi.ko"
TESTS="${KVM_PFI_TESTS:-$(selftests_dir "$KDIR")}"
TOOL="${KVM_PFI_TOOL:-${CARGO_TARGET_DIR:-$KVM_PFI_CACHE/target}/release/kvm-pfi}"
KSRC="$(kernel_src_dir)"
# The test programs the runner starts (selftests/run_in_vm.sh).
PROGS=(kvm_pfi_test kvm_pfi_inject_test kvm_pfi_detect_test kvm_pfi_protect_test kvm_pfi_unload_test kvm_pfi_stress_test kvm_pfi_vmm kvm_pfi_bench)

for f in "$KO" "$TOOL" "$KDIR/arch/x86/boot/bzImage" "${PROGS[@]/#/$TESTS/}"; do
	[ -e "$f" ] || die "missing $f: run 'make module tool selftests'"
done
for c in bochs xorriso busybox; do
	command -v "$c" >/dev/null || die "$c is not installed: run scripts/toolchain.sh (make deps)"
done

# Debian 12's Bochs 2.7: one CPU (with two, its debugger loop makes runs
# about 20 times slower); Haswell is the newest preset the 7.3 kernel boots
# on (corei7_skylake_x reports a wrong XSAVE size); 'clearcpuid=ht' because
# the preset's CPUID topology makes 7.3's topology code warn.
BOCHS_CPU=corei7_haswell_4770
BOCHS_CPUS=1
# Instructions per emulated second: the clock follows the instruction
# count, not the host, so guest timeouts measure work and do not shrink
# when other jobs share the cores (Bochs ran 15-30 million instructions
# per second of its own CPU time here: emulated time runs slower than wall
# time).
BOCHS_IPS=60000000
KVER="$(cat "$KDIR/include/config/kernel.release")"
# loglevel=4: the console is also the runner's output, and a kernel
# message printed into the middle of its closing line would hide it
# (dmesg still has everything, and the runner checks it).
CMDLINE="console=ttyS0,115200 loglevel=4 clearcpuid=ht,aperfmperf mitigations=off panic=-1 rdinit=/init"

# What goes into the initramfs: ELF files with the shared libraries ldd
# names for them, at their Debian paths (the tree is usr-merged).
# Debug information and local symbols are dropped: the BIOS reads the
# initramfs from the ISO at emulated speed (kvm.ko is 26 MB with them).
add_elf() { # root file [dest]
	local root=$1 f=$2 dest=${3:-$2} lib
	install -D -m 755 "$f" "$root$dest"
	strip --strip-unneeded "$root$dest"
	while read -r lib; do
		[ -e "$root$lib" ] || install -D -m 755 "$(readlink -f "$lib")" "$root$lib"
	done < <(ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
}

build_initramfs() { # root
	local root=$1 m
	mkdir -p "$root"/{usr/bin,usr/lib/x86_64-linux-gnu,usr/lib64,proc,sys,dev,tmp,run,root,etc}
	ln -s usr/bin "$root/bin"; ln -s usr/bin "$root/sbin"; ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
	install -m 755 "$(command -v busybox)" "$root/usr/bin/busybox"
	for m in $(busybox --list); do [ -e "$root/usr/bin/$m" ] || ln -s busybox "$root/usr/bin/$m"; done
	rm -f "$root/usr/bin/bash" "$root/usr/bin/dmesg"
	add_elf "$root" /usr/bin/bash
	# util-linux's dmesg: the runner's checks need -k, which busybox's lacks.
	add_elf "$root" /usr/bin/dmesg
	# Python for watch_events.py and the kernel tree's YNL CLI: the standard
	# library with its byte code (compiling it under Bochs would take
	# minutes), and PyYAML.
	add_elf "$root" "$(readlink -f /usr/bin/python3)" /usr/bin/python3
	rsync -a --exclude=test --exclude=tests --exclude=idlelib --exclude=tkinter --exclude=turtledemo \
		--exclude=lib2to3 --exclude=ensurepip --exclude=pydoc_data --exclude='config-*' \
		--exclude=site-packages --exclude=dist-packages --exclude='*.opt-?.pyc' \
		/usr/lib/python3.11/ "$root/usr/lib/python3.11/"
	for m in "$root"/usr/lib/python3.11/lib-dynload/*.so; do add_elf "$root" "${m#"$root"}"; done
	mkdir -p "$root/usr/lib/python3/dist-packages"
	cp -a /usr/lib/python3/dist-packages/{yaml,_yaml} "$root/usr/lib/python3/dist-packages/"
	for m in /usr/lib/python3/dist-packages/yaml/*.so; do add_elf "$root" "$m"; done
	# KVM and its dependencies, for the guest's modprobe.
	for m in arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-intel.ko virt/lib/irqbypass.ko; do
		install -D -m 644 "$KDIR/$m" "$root/lib/modules/$KVER/kernel/$m"
		strip --strip-debug "$root/lib/modules/$KVER/kernel/$m"
	done
	cp "$KDIR/modules.order" "$KDIR/modules.builtin" "$KDIR/modules.builtin.modinfo" "$root/lib/modules/$KVER/" 2>/dev/null || true
	depmod -b "$root/usr" "$KVER" 2>/dev/null || depmod -b "$root" "$KVER"
	# The module, the tool, the test programs and the repository files the
	# runner reads, at the paths the runner is given.
	install -D -m 644 "$KO" "$root/kvm-pfi/kvm_pfi.ko"
	strip --strip-debug "$root/kvm-pfi/kvm_pfi.ko"
	add_elf "$root" "$TOOL" /kvm-pfi/kvm-pfi
	for m in "${PROGS[@]}"; do add_elf "$root" "$TESTS/$m" "/kvm-pfi/tests/$m"; done
	mkdir -p "$root/kvm-pfi/selftests" "$root/kvm-pfi/scripts" "$root/kvm-pfi/Documentation" "$root/ksrc/tools/net"
	cp "$KVM_PFI_ROOT"/selftests/*.py "$KVM_PFI_ROOT/selftests/run_in_vm.sh" "$root/kvm-pfi/selftests/"
	cp "$KVM_PFI_ROOT/scripts/demo.yar" "$KVM_PFI_ROOT/scripts/bench-in-vm.sh" "$root/kvm-pfi/scripts/"
	cp -a "$KVM_PFI_ROOT/Documentation/netlink" "$root/kvm-pfi/Documentation/"
	# watch_events.py builds a profile from the pfi_core fixtures.
	mkdir -p "$root/kvm-pfi/rust/pfi_core/tests"
	cp -a "$KVM_PFI_ROOT/rust/pfi_core/tests/fixtures" "$root/kvm-pfi/rust/pfi_core/tests/"
	rsync -a --exclude=__pycache__ --exclude='*.o' "$KSRC/tools/net/ynl" "$root/ksrc/tools/net/"
	echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
	echo "root:x:0:" >"$root/etc/group"
	cat >"$root/init" <<-'EOF'
	#!/bin/sh
	# kvm-pfi VMX stage (scripts/vmx-test.sh): the runner, then power off.
	export PATH=/usr/bin HOME=/root TMPDIR=/tmp
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	mount -t devtmpfs devtmpfs /dev
	# devtmpfs has no /dev/fd: bash's process substitution needs it.
	ln -s /proc/self/fd /dev/fd
	ln -s /proc/self/fd/0 /dev/stdin
	ln -s /proc/self/fd/1 /dev/stdout
	ln -s /proc/self/fd/2 /dev/stderr
	mount -t tmpfs tmpfs /tmp
	mount -t tmpfs tmpfs /run
	mount -t debugfs debugfs /sys/kernel/debug
	mount -t tracefs tracefs /sys/kernel/tracing
	ip link set lo up
	. /kvm-pfi/env
	echo "kvm-pfi-vmx: start, $(nproc) CPU, $(grep -o -w -E 'vmx|ept|vpid|unrestricted_guest' /proc/cpuinfo | sort -u | tr '\n' ' ')"
	if [ "$KVM_PFI_VMX_RUN" = bench ]; then
		BENCH=/kvm-pfi/tests/kvm_pfi_bench EXITS=10000 /bin/bash /kvm-pfi/scripts/bench-in-vm.sh
	else
		/bin/bash /kvm-pfi/selftests/run_in_vm.sh
	fi
	echo "kvm-pfi-vmx: runner exit $?"
	poweroff -f
	EOF
	chmod 755 "$root/init"
	cat >"$root/kvm-pfi/env" <<-EOF
	export KVM_PFI_KO=/kvm-pfi/kvm_pfi.ko KVM_PFI_TESTS=/kvm-pfi/tests KVM_PFI_TOOL=/kvm-pfi/kvm-pfi
	export KVM_PFI_ROOT=/kvm-pfi KVM_PFI_SRC=/ksrc KVM_PFI_ONLY='${KVM_PFI_ONLY:-}' KVM_PFI_VMX_RUN='${KVM_PFI_VMX_RUN:-suite}'
	# Bochs runs the mini OS some ten times slower than QEMU: one round.
	export KVM_PFI_UNLOAD_ROUNDS=1 KVM_PFI_STRESS_FAULTS=${KVM_PFI_STRESS_FAULTS:-1600} KVM_PFI_STRESS_BASELINE_TIMERS=300
	EOF
}

build_iso() { # dir
	local dir=$1 iso=$1/iso
	mkdir -p "$iso/isolinux"
	cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$iso/isolinux/"
	cp "$KDIR/arch/x86/boot/bzImage" "$iso/vmlinuz"
	(cd "$dir/root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | zstd -q -12 -T2 >"$iso/initrd.zst"
	printf 'DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL /vmlinuz\n  APPEND initrd=/initrd.zst %s\n' \
		"$CMDLINE" >"$iso/isolinux/isolinux.cfg"
	xorriso -as mkisofs -quiet -o "$dir/boot.iso" -b isolinux/isolinux.bin -c isolinux/boot.cat \
		-no-emul-boot -boot-load-size 4 -boot-info-table -R -J "$iso" 2>/dev/null
	rm -rf "$iso" "$dir/root"
}

# The ISO is keyed by everything that goes into it.
key="$( {
	sha256sum "$KDIR/arch/x86/boot/bzImage" "$KO" "$TOOL" "${PROGS[@]/#/$TESTS/}" \
		"$KDIR"/arch/x86/kvm/kvm{,-intel}.ko "$KDIR/virt/lib/irqbypass.ko" "$0" \
		"$KVM_PFI_ROOT"/selftests/*.py "$KVM_PFI_ROOT/selftests/run_in_vm.sh" "$KVM_PFI_ROOT/scripts/demo.yar" \
		"$KVM_PFI_ROOT/scripts/bench-in-vm.sh" "$KVM_PFI_ROOT"/rust/pfi_core/tests/fixtures/* \
		| cut -d' ' -f1
	find "$KVM_PFI_ROOT/Documentation/netlink" "$KSRC/tools/net/ynl" -type f -name '*.[py]*' -print0 | LC_ALL=C sort -z |
		xargs -0 cat | sha256sum
	dpkg-query -W -f='${Package} ${Version}\n' bash busybox-static python3.11 python3-yaml isolinux xorriso
	echo "$CMDLINE ${KVM_PFI_ONLY:-} ${KVM_PFI_VMX_RUN:-suite}"
} | sha256sum | cut -c1-16)"
VMX_DIR="$KVM_PFI_CACHE/vmx"
ISO_DIR="$VMX_DIR/iso-$key"
if [ ! -f "$ISO_DIR/boot.iso" ]; then
	log "building the VMX stage's initramfs and ISO in $ISO_DIR"
	t0=$SECONDS
	rm -rf "$ISO_DIR.tmp" && mkdir -p "$ISO_DIR.tmp"
	build_initramfs "$ISO_DIR.tmp/root"
	build_iso "$ISO_DIR.tmp"
	rm -rf "$ISO_DIR" && mv "$ISO_DIR.tmp" "$ISO_DIR"
	log "ISO built in $((SECONDS - t0)) s ($(du -m "$ISO_DIR/boot.iso" | cut -f1) MiB)"
	# Keep the three newest ISOs (other checkouts may be using theirs).
	ls -1dt "$VMX_DIR"/iso-* | tail -n +4 | xargs -r rm -rf
fi
touch "$ISO_DIR"

# A failed run keeps its logs in its folder; the five newest are kept.
{ ls -1dt "$VMX_DIR"/run.* 2>/dev/null || true; } | tail -n +6 | xargs -r rm -rf
RUN_DIR="$(mktemp -d "$VMX_DIR/run.XXXXXX")"
SERIAL="$RUN_DIR/serial.log"
cat >"$RUN_DIR/bochsrc" <<EOF
memory: guest=2048, host=2048
cpu: model=$BOCHS_CPU, count=$BOCHS_CPUS, ips=$BOCHS_IPS, reset_on_triple_fault=0
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
display_library: rfb, options="timeout=0"
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
speaker: enabled=0
pci: enabled=1, chipset=i440fx
ata0-master: type=cdrom, path=$ISO_DIR/boot.iso, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev=$SERIAL
clock: sync=none, time0=1
log: $RUN_DIR/bochs.log
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
EOF
# The Debian build has the debugger compiled in: 'c' lets it run.
echo c >"$RUN_DIR/rc"

log "booting the test kernel under Bochs $(dpkg-query -W -f='${Version}' bochs): $BOCHS_CPU, $BOCHS_CPUS CPU, 2 GiB"
log "one emulated CPU: the tests that need two vCPUs running in parallel (fixture_two_vcpus," \
	"two_vcpus_two_targets_in_flight, rmmod_with_fault_in_flight) run with their vCPU threads taking turns on it"
t0=$SECONDS
timeout "${KVM_PFI_VMX_TIMEOUT:-1500}" bochs -q -f "$RUN_DIR/bochsrc" -rc "$RUN_DIR/rc" \
	>"$RUN_DIR/bochs.out" 2>&1 </dev/null &
bochs_pid=$!
# Bochs does not always quit at power-off: stop it once the runner is done
# or the kernel died.
while kill -0 "$bochs_pid" 2>/dev/null; do
	if grep -qE '^kvm-pfi-vmx: runner exit|Kernel panic|reboot: Power down' "$SERIAL" 2>/dev/null; then
		sleep 2
		kill "$bochs_pid" 2>/dev/null || true
		break
	fi
	sleep 2
done
wait "$bochs_pid" 2>/dev/null || true
wall=$((SECONDS - t0))
[ -f "$SERIAL" ] || : >"$SERIAL"
# This checkout's last serial log, for reading after a run.
LAST_LOG="$VMX_DIR/last-serial-$(echo "$KVM_PFI_ROOT" | sha1sum | cut -c1-8).log"
cp "$SERIAL" "$LAST_LOG"

rc=$(tr -d '\r' <"$SERIAL" | sed -n 's/^kvm-pfi-vmx: runner exit \([0-9]*\).*/\1/p' | tail -1)
if [ -z "$rc" ]; then
	log "the VMX stage did not finish (${wall} s); the serial log's end:"
	tr -d '\r' <"$SERIAL" | tail -40 >&2
	log "full logs: $RUN_DIR"
	echo "0 passed, 1 failed" | tee "${KVM_PFI_RESULTS:-/dev/null}"
	exit 1
fi
log "VMX stage: runner exit $rc after ${wall} s under Bochs (serial log: $LAST_LOG)"
# The runner's output last: it ends with the closing "N passed, M failed".
tr -d '\r' <"$SERIAL" | sed -n '/^kvm-pfi-vmx: start/,/^kvm-pfi-vmx: runner exit/p' |
	grep -v '^kvm-pfi-vmx: runner exit' | tee "${KVM_PFI_RESULTS:-/dev/null}"
rm -rf "$RUN_DIR"
[ "$rc" = 0 ]
