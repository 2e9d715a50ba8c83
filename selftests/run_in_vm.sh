#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the test VM (scripts/vm-test.sh boots it under QEMU with SVM,
# scripts/vmx-test.sh under Bochs with VMX): loads kvm_amd or kvm_intel,
# whichever the CPU's flags call for, and kvm_pfi, runs every test program,
# prints KTAP and a final
#   N passed, M failed
# line, and fails if the kernel's messages show a warning, BUG, lockdep or
# refcount report, or if the module does not unload cleanly.
#
# Environment: KVM_PFI_KO, KVM_PFI_TESTS (folder of the test programs),
# KVM_PFI_TOOL (the kvm-pfi binary), KVM_PFI_ROOT (the repository);
# KVM_PFI_BTF and KVM_PFI_SYSTEM_MAP (the running kernel's BTF blob and
# System.map, for linux_walk.py).
set -u

: "${KVM_PFI_KO:?}" "${KVM_PFI_TESTS:?}" "${KVM_PFI_TOOL:?}" "${KVM_PFI_ROOT:?}"
export KVM_PFI_KO KVM_PFI_TESTS KVM_PFI_TOOL KVM_PFI_BTF KVM_PFI_SYSTEM_MAP
PY=/usr/bin/python3

passed=0 failed=0 skipped=0 n=0
results=()

record() { # name status(ok|not ok) [directive]
	n=$((n + 1))
	results+=("$2 $n $1${3:+ # $3}")
}

# A kselftest-harness program: its TAP is nested (indented) as KTAP
# subtests; its "# Totals:" line counts the cases.
run_harness() {
	local name=$1 prog=$2 out totals p f s
	out=$(mktemp)
	timeout 600 "$prog" >"$out" 2>&1
	local rc=$?
	sed 's/^/    /' "$out"
	totals=$(grep -E '^# Totals: pass:[0-9]+ fail:[0-9]+' "$out" | tail -1)
	if [ -z "$totals" ]; then
		echo "    # $name: no totals (exit $rc)"
		failed=$((failed + 1))
		record "$name" "not ok"
		return
	fi
	read -r p f s < <(sed -E 's/^# Totals: pass:([0-9]+) fail:([0-9]+) .* skip:([0-9]+) .*/\1 \2 \3/' <<<"$totals")
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	if [ "$rc" -eq 0 ] && [ "$f" -eq 0 ]; then record "$name" "ok"; else record "$name" "not ok"; fi
	rm -f "$out"
}

# A Python test in KTAP form: "ok"/"not ok" lines at its top level count;
# "not ok ... # TODO" is an expected failure, counted as skipped.
run_python() {
	local name=$1 script=$2 out p f t
	shift 2
	out=$(mktemp)
	PYTHONUNBUFFERED=1 timeout "${KVM_PFI_PY_TIMEOUT:-600}" "$PY" "$script" "$@" >"$out" 2>&1
	local rc=$?
	sed 's/^/    /' "$out"
	# The real-guest test's coverage line and linux_walk's result line,
	# also at the top level.
	grep -E '^(coverage|processes found) ' "$out"
	p=$(grep -cE '^ok [0-9]+' "$out")
	t=$(grep -cE '^not ok [0-9]+ .*# TODO' "$out")
	f=$(($(grep -cE '^not ok [0-9]+' "$out") - t))
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + t))
	if [ "$rc" -eq 0 ] && [ "$f" -eq 0 ] && [ "$p" -gt 0 ]; then
		record "$name" "ok"
	else
		[ "$f" -eq 0 ] && failed=$((failed + 1))
		record "$name" "not ok"
	fi
	rm -f "$out"
}

echo "KTAP version 1"
if grep -qw svm /proc/cpuinfo; then kvm_vendor=kvm_amd; elif grep -qw vmx /proc/cpuinfo; then kvm_vendor=kvm_intel
else echo "Bail out! the CPU has neither svm nor vmx"; exit 1; fi
echo "# $kvm_vendor, $(nproc) CPU"
if [ "$(nproc)" -lt 2 ]; then
	echo "# one CPU: tests that need two vCPUs running in parallel run with their vCPU threads taking turns"
fi
modprobe $kvm_vendor || { echo "Bail out! $kvm_vendor does not load"; exit 1; }
insmod "$KVM_PFI_KO" || { echo "Bail out! kvm_pfi does not load"; exit 1; }

# KVM_PFI_ONLY="prog ...": run just these programs (a developer's shortcut;
# the unload and dmesg checks always run).
only() { [ -z "${KVM_PFI_ONLY:-}" ] || [[ " $KVM_PFI_ONLY " == *" $1 "* ]]; }
# KVM_PFI_REPEAT=N: run them N times in a row (chasing a rare failure).
run_programs() {
	only kvm_pfi_test && run_harness kvm_pfi_test "$KVM_PFI_TESTS/kvm_pfi_test"
	only watch_events && run_python watch_events "$KVM_PFI_ROOT/selftests/watch_events.py"
	# The Linux walkers over this VM's own kernel (/proc/kcore), against
	# procfs: only where the kernel's BTF is given (scripts/vm-test.sh) or
	# built in (not in the VMX stage: the same kernel, checked by the SVM one).
	if { [ -n "${KVM_PFI_BTF:-}" ] || [ -e /sys/kernel/btf/vmlinux ]; } && only linux_walk; then
		run_python linux_walk "$KVM_PFI_ROOT/selftests/linux_walk.py"
	fi
	only kvm_pfi_inject_test && run_harness kvm_pfi_inject_test "$KVM_PFI_TESTS/kvm_pfi_inject_test"
	only kvm_pfi_detect_test && run_harness kvm_pfi_detect_test "$KVM_PFI_TESTS/kvm_pfi_detect_test"
	only kvm_pfi_protect_test && run_harness kvm_pfi_protect_test "$KVM_PFI_TESTS/kvm_pfi_protect_test"
	only kvm_pfi_stress_test && run_harness kvm_pfi_stress_test "$KVM_PFI_TESTS/kvm_pfi_stress_test"
	# A real Linux guest (scripts/real-guest.sh builds it; `make test` runs the
	# main case, `make e2e` every case): only when its kernel is given.
	if [ -n "${KVM_PFI_GUEST_KERNEL:-}" ] && only real_guest; then
		KVM_PFI_PY_TIMEOUT=${KVM_PFI_REAL_GUEST_TIMEOUT:-1500} run_python real_guest \
			"$KVM_PFI_ROOT/selftests/real_guest.py" ${KVM_PFI_REAL_GUEST_ARGS:-swapped_pages}
	fi
}
for _ in $(seq "${KVM_PFI_REPEAT:-1}"); do run_programs; done
# Unloads and reloads the module: last, so a failure cannot disturb others.
only kvm_pfi_unload_test && run_harness kvm_pfi_unload_test "$KVM_PFI_TESTS/kvm_pfi_unload_test"

# The module must unload cleanly, and the log must be clean.
if rmmod kvm_pfi; then
	passed=$((passed + 1)); record module_unload "ok"
else
	failed=$((failed + 1)); record module_unload "not ok"
fi
# The check below reads kernel messages only: a userspace WARNING line in
# the log (as virtme-ng-init writes) is seen by dmesg but not by dmesg -k.
# It also needs a dmesg that has -k (util-linux's; busybox's has not, and
# an empty answer would pass every check below).
echo "<4>kvm-pfi-runner: WARNING: a userspace line, not a kernel warning" >/dev/kmsg
if dmesg | grep -q 'kvm-pfi-runner: WARNING' && dmesg -k >/dev/null && dmesg -k | grep -q . &&
	! dmesg -k | grep -q 'kvm-pfi-runner'; then
	passed=$((passed + 1)); record dmesg_check_ignores_userspace "ok"
else
	failed=$((failed + 1)); record dmesg_check_ignores_userspace "not ok"
fi
# What lockdep, the atomic-sleep check, refcount and the core print on a bug,
# in the kernel's own messages only (-k: facility kern; a line userspace
# writes to /dev/kmsg, such as virtme-ng-init's "WARNING: ... not found"
# when ip or systemd-tmpfiles is missing, is facility user).
bad=$(dmesg -k | grep -E 'WARNING:|BUG:|Oops|possible (recursive|circular) locking|inconsistent lock state|DEBUG_LOCKS_WARN_ON|lockdep is turned off|refcount_t:|sleeping function called from invalid context|INFO: task .* blocked|UBSAN:|general protection fault|kvm_pfi.*(error|failed)')
if [ -z "$bad" ]; then
	passed=$((passed + 1)); record dmesg_clean "ok"
else
	echo "$bad" | sed 's/^/    # /'
	failed=$((failed + 1)); record dmesg_clean "not ok"
fi

echo "1..$n"
printf '%s\n' "${results[@]}"
echo "# kvm-pfi selftests: $passed passed, $failed failed, $skipped skipped"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
