// SPDX-License-Identifier: GPL-2.0
// The demo's rule file (make demo): kvm-pfi's rule format is a subset of
// YARA's, so the same file serves `kvm-pfi sigs load` (scanned in the
// kernel) and `kvm-pfi snapshot --yara` (scanned by yara-x in userspace).
rule eicar_test_file {
    meta:
        description = "The EICAR anti-virus test string"
    strings:
        $name = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
        // Its start, with room for variants between the two halves.
        $head = { 58 35 4F 21 50 25 40 41 50 [0-4] 34 5C 50 5A 58 35 34 }
    condition:
        any of them
}
