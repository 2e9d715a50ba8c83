// SPDX-License-Identifier: GPL-2.0
//! The built binary as an operator runs it: exit statuses and messages of
//! the commands that need no module (or find none).

use std::path::Path;
use std::process::{Command, Output};

fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvm-pfi"))
        .args(args)
        .output()
        .expect("run kvm-pfi")
}

fn status(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const GOOD_RULES: &str = r#"rule marker {
  strings:
    $a = { 4D 5A ?? [2-4] 50 }
    $b = "kvm-pfi"
  condition:
    any of them
}
"#;

/// The error is on line 3: a hex byte that is not one.
const BAD_RULES: &str = r#"rule marker {
  strings:
    $a = { 4D 5A QQ 50 }
  condition:
    any of them
}
"#;

#[test]
fn sigs_compile_error_is_file_line_col_and_65() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("bad.rules");
    std::fs::write(&rules, BAD_RULES).unwrap();
    let out = dir.path().join("set.bin");
    let o = tool(&["sigs", "compile", s(&rules), "-o", s(&out)]);
    assert_eq!(status(&o), 65, "{}", stderr(&o));
    let err = stderr(&o);
    let prefix = format!("kvm-pfi: {}:3:", rules.display());
    assert!(err.starts_with(&prefix), "{err}");
    // kvm-pfi: FILE:3:COL: message, one line
    let rest = &err[prefix.len()..];
    let (col, msg) = rest.split_once(": ").expect("COL: message");
    assert!(col.parse::<u32>().is_ok_and(|c| c >= 1), "{err}");
    assert!(
        !msg.trim().is_empty() && msg.ends_with('\n') && msg.lines().count() == 1,
        "{err}"
    );
    assert!(o.stdout.is_empty());
    assert!(!out.exists(), "nothing written for a bad file");

    // The same file given to `sigs load` fails the same way, before the device.
    let o = tool(&[
        "sigs",
        "load",
        s(&rules),
        "--device",
        "/nonexistent/kvm_pfi",
    ]);
    assert_eq!(status(&o), 65, "{}", stderr(&o));
    assert!(stderr(&o).starts_with(&prefix));
}

#[test]
fn sigs_compile_writes_the_binary_set() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("good.rules");
    std::fs::write(&rules, GOOD_RULES).unwrap();
    let out = dir.path().join("set.bin");
    let o = tool(&["sigs", "compile", s(&rules), "-o", s(&out)]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    let set = std::fs::read(&out).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}: 1 rule, {} bytes\n", out.display(), set.len())
    );
    // struct kvm_pfi_sigs_header, little-endian: magic "KPFS", version 1,
    // size = the whole set, one rule.
    let word = |i: usize| u32::from_le_bytes(set[4 * i..4 * i + 4].try_into().unwrap());
    assert_eq!(&set[..4], b"KPFS");
    assert_eq!(word(1), 1);
    assert_eq!(word(2) as usize, set.len());
    assert_eq!(word(3), 1);

    // -o - writes the same bytes to stdout, and nothing else.
    let o = tool(&["sigs", "compile", s(&rules), "-o", "-"]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    assert_eq!(o.stdout, set);
}

#[test]
fn missing_input_is_66() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.rules");
    let out = dir.path().join("o.bin");
    for args in [
        vec!["sigs", "compile", s(&missing), "-o", s(&out)],
        vec!["sigs", "load", s(&missing)],
        vec!["sigs", "load", "--compiled", s(&missing)],
        vec!["snapshot", "--from", s(dir.path()), "--yara", s(&missing)],
    ] {
        let o = tool(&args);
        assert_eq!(status(&o), 66, "{args:?}: {}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!(
                "kvm-pfi: {}: No such file or directory\n",
                missing.display()
            ),
            "{args:?}"
        );
    }
    // A directory without a snapshot in it.
    let rules = dir.path().join("r.yar");
    std::fs::write(&rules, "rule a { condition: true }").unwrap();
    let o = tool(&["snapshot", "--from", s(dir.path()), "--yara", s(&rules)]);
    assert_eq!(status(&o), 66, "{}", stderr(&o));
    assert!(stderr(&o).contains("index.jsonl: No such file or directory"));
}

#[test]
fn no_module_is_69() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("kvm_pfi");
    let rules = dir.path().join("good.rules");
    std::fs::write(&rules, GOOD_RULES).unwrap();
    for args in [
        vec!["version", "--device", s(&dev)],
        vec!["list", "--device", s(&dev)],
        vec!["sigs", "info", "--device", s(&dev)],
        vec!["sigs", "clear", "--device", s(&dev)],
        vec!["sigs", "load", s(&rules), "--device", s(&dev)],
        vec!["target", "ls", "--vm", "1", "--device", s(&dev)],
    ] {
        let o = tool(&args);
        assert_eq!(status(&o), 69, "{args:?}: {}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!(
                "kvm-pfi: open {}: No such file or directory (is the kvm_pfi module loaded?)\n",
                dev.display()
            )
        );
    }
}

#[test]
fn usage_errors_are_2_and_help_lists_the_statuses() {
    for args in [
        &["sigs", "load"][..],
        &["sigs", "compile", "x"],
        &["snapshot"],
        &["snapshot", "--from", "d"],
        &["target", "add", "--vm", "1"],
    ] {
        let o = tool(args);
        assert_eq!(status(&o), 2, "{args:?}: {}", stderr(&o));
    }
    let o = tool(&["--help"]);
    assert_eq!(status(&o), 0);
    let help = String::from_utf8_lossy(&o.stdout);
    for line in ["  65  ", "  66  ", "  69  ", "  77  ", "  3   "] {
        assert!(help.contains(line), "{line:?} not in:\n{help}");
    }
}

/// `snapshot --from`: matches in one page and across two, none in clean
/// pages; --fail-on-match turns matches into status 3.
#[test]
fn snapshot_from_with_yara() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    std::fs::create_dir(&snap).unwrap();
    let mut p0 = vec![0u8; 4096];
    p0[10..20].copy_from_slice(b"SECRET-KEY");
    p0[4090..].copy_from_slice(b"SECRET");
    let mut p1 = vec![1u8; 4096];
    p1[..4].copy_from_slice(b"-KEY");
    let clean = vec![2u8; 4096];
    let mut index = String::new();
    for (gva, data) in [(0x1000u64, &p0), (0x2000, &p1), (0x8000, &clean)] {
        let file = format!("vm1-t4-{gva:016x}.page");
        std::fs::write(snap.join(&file), data).unwrap();
        index += &format!(
            "{{\"vm_id\":1,\"target_id\":4,\"cr3\":4096,\"gva\":{gva},\"gpa\":0,\"how\":\"injected\",\"file\":\"{file}\"}}\n"
        );
    }
    std::fs::write(snap.join("index.jsonl"), index).unwrap();
    let rules = dir.path().join("r.yar");
    std::fs::write(
        &rules,
        "rule secret { strings: $k = \"SECRET-KEY\" condition: $k }\n",
    )
    .unwrap();

    let o = tool(&["snapshot", "--from", s(&snap), "--yara", s(&rules)]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let p0_file = snap
        .join("vm1-t4-0000000000001000.page")
        .display()
        .to_string();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        (&lines[0]["gva"], &lines[0]["offset"], &lines[0]["file"]),
        (
            &serde_json::json!(0x100a),
            &serde_json::json!(10),
            &serde_json::json!(p0_file)
        )
    );
    assert_eq!(
        (
            &lines[1]["gva"],
            &lines[1]["offset"],
            &lines[1]["length"],
            &lines[1]["file"]
        ),
        (
            &serde_json::json!(0x1ffa),
            &serde_json::json!(4090),
            &serde_json::json!(10),
            &serde_json::json!(p0_file)
        )
    );
    assert!(lines
        .iter()
        .all(|l| l["rule"] == "secret" && l["vm_id"] == 1 && l["target_id"] == 4));

    let o = tool(&[
        "snapshot",
        "--from",
        s(&snap),
        "--yara",
        s(&rules),
        "--fail-on-match",
    ]);
    assert_eq!(status(&o), 3, "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "kvm-pfi: 2 matches reported (--fail-on-match)\n"
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);

    // Nothing matches: 0 even with --fail-on-match.
    std::fs::write(
        &rules,
        "rule other { strings: $k = \"ABSENT\" condition: $k }\n",
    )
    .unwrap();
    let o = tool(&[
        "snapshot",
        "--from",
        s(&snap),
        "--yara",
        s(&rules),
        "--fail-on-match",
    ]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    assert!(o.stdout.is_empty());

    // Rules that do not compile: 65, located.
    std::fs::write(&rules, "rule broken {\n  condition:\n    $nope\n}\n").unwrap();
    let o = tool(&["snapshot", "--from", s(&snap), "--yara", s(&rules)]);
    assert_eq!(status(&o), 65, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(&format!("kvm-pfi: {}:3:5: ", rules.display())),
        "{}",
        stderr(&o)
    );
}

/// `--version` answers even without the module, and says so.
#[test]
fn version_flag_without_module() {
    if Path::new("/dev/kvm_pfi").exists() {
        return; // the module is loaded here: the in-VM suite covers that case
    }
    for flag in ["--version", "-V"] {
        let o = tool(&[flag]);
        assert_eq!(status(&o), 0, "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        let mut lines = out.lines();
        let head = format!("kvm-pfi {} (ABI version ", env!("CARGO_PKG_VERSION"));
        assert!(lines.next().is_some_and(|l| l.starts_with(&head)), "{out}");
        assert!(
            lines
                .next()
                .is_some_and(|l| l.starts_with("module kvm_pfi: not available (open /dev/kvm_pfi")),
            "{out}"
        );
    }
    assert_eq!(status(&tool(&["--version", "list"])), 2);
}

#[test]
fn generated_man_pages_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let o = tool(&["generate", "man", s(dir.path())]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    let watch = std::fs::read_to_string(dir.path().join("kvm-pfi-watch.1")).unwrap();
    assert!(
        watch.starts_with(".ie \\n(.g .ds Aq"),
        "not roff: {}",
        &watch[..80]
    );
    assert!(watch.contains("journald"), "{watch}");
    for page in [
        "kvm-pfi.1",
        "kvm-pfi-target-add.1",
        "kvm-pfi-snapshot.1",
        "kvm-pfi-profile-load.1",
        "kvm-pfi-ps.1",
        "kvm-pfi-vmas.1",
    ] {
        assert!(dir.path().join(page).exists(), "{page}");
    }
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = tool(&["generate", "completions", shell]);
        assert_eq!(status(&o), 0, "{shell}: {}", stderr(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(script.contains("syslog-tcp"), "{shell}");
    }
    assert_eq!(status(&tool(&["generate", "completions", "tcsh"])), 2);
}

/// `watch --replay`: bad input is 65 with file:line, a missing file 66, a
/// receiver that is not there 1; OCSF lines come out as JSON.
#[test]
fn watch_replay_errors_and_ocsf() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"event\":\"vm-attached\",\"vm_id\":1}\nnot json\n").unwrap();
    let o = tool(&["watch", "--replay", s(&bad), "--format", "ocsf"]);
    assert_eq!(status(&o), 65, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(&format!("kvm-pfi: {}:2: ", bad.display())),
        "{}",
        stderr(&o)
    );
    let o = tool(&["watch", "--replay", s(&dir.path().join("none"))]);
    assert_eq!(status(&o), 66, "{}", stderr(&o));
    let good = dir.path().join("good.jsonl");
    std::fs::write(
        &good,
        "{\"event\":\"detection\",\"vm_id\":2,\"rule_name\":\"r\",\"time_ns\":5000000}\n{\"event\":\"overrun\"}\n",
    )
    .unwrap();
    let o = tool(&["watch", "--replay", s(&good), "--format", "ocsf"]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["class_uid"], 2004);
    assert_eq!(lines[0]["time"], 5);
    assert_eq!(lines[1]["class_uid"], 5019);
    // JSON in, JSON out: the same line.
    let o = tool(&["watch", "--replay", s(&good)]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        std::fs::read_to_string(&good).unwrap()
    );
    let sock = dir.path().join("no-syslog");
    let o = tool(&[
        "watch",
        "--format",
        "syslog",
        "--syslog-socket",
        s(&sock),
        "--replay",
        s(&good),
    ]);
    assert_eq!(status(&o), 1, "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "kvm-pfi: connect to syslog socket {}: No such file or directory\n",
            sock.display()
        )
    );
}

const BTF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../rust/pfi_core/tests/fixtures/linux-7.3-btf-cut.bin"
);
const MAP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../rust/pfi_core/tests/fixtures/linux-7.3-System.map"
);

#[test]
fn profile_build_show_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let prof = dir.path().join("guest.profile");
    let o = tool(&[
        "profile",
        "build",
        "--btf",
        BTF,
        "--system-map",
        MAP,
        "-o",
        s(&prof),
    ]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(said.ends_with(": 40 fields, 7 symbols\n"), "{said}");
    let text = std::fs::read_to_string(&prof).unwrap();
    assert!(text.starts_with("kvm-pfi-linux-profile 1\n"), "{text}");
    assert!(text.contains("field task_struct.comm 2184 16\n"), "{text}");
    assert!(
        text.contains("symbol init_task 0xffffffff82812ac0\n"),
        "{text}"
    );
    // To stdout by default; show prints it back unchanged.
    let o = tool(&["profile", "build", "--btf", BTF, "--system-map", MAP]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), text);
    let o = tool(&["profile", "show", s(&prof)]);
    assert_eq!(
        (status(&o), String::from_utf8_lossy(&o.stdout).into_owned()),
        (0, text.clone())
    );

    // A damaged profile: its line, status 65.
    let bad = dir.path().join("bad.profile");
    std::fs::write(
        &bad,
        text.replace("field task_struct.pid", "field task_struct.pidx"),
    )
    .unwrap();
    let o = tool(&["profile", "show", s(&bad)]);
    assert_eq!(status(&o), 65, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(&format!("kvm-pfi: {}: profile line ", bad.display())),
        "{}",
        stderr(&o)
    );
    // A symbol table without init_task.
    let map = dir.path().join("System.map");
    std::fs::write(&map, "ffffffff81000000 T _text\n").unwrap();
    let o = tool(&["profile", "build", "--btf", BTF, "--system-map", s(&map)]);
    assert_eq!(status(&o), 65, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("symbol init_task is missing"),
        "{}",
        stderr(&o)
    );
    // A vmlinux that is no ELF file; missing inputs (66).
    let o = tool(&["profile", "build", "--vmlinux", MAP, "--system-map", MAP]);
    assert_eq!(status(&o), 65, "{}", stderr(&o));
    let o = tool(&[
        "profile",
        "build",
        "--btf",
        "/nonexistent",
        "--system-map",
        MAP,
    ]);
    assert_eq!(status(&o), 66, "{}", stderr(&o));
    let o = tool(&["profile", "walk", s(&prof), "--kcore", "/nonexistent"]);
    assert_eq!(status(&o), 66, "{}", stderr(&o));
    // A core that maps no kernel image.
    let o = tool(&["profile", "walk", s(&prof), "--kcore", s(&prof)]);
    assert_eq!(status(&o), 65, "{}", stderr(&o));
}

/// `profile load`: the file is checked before the device is opened (65 for
/// a damaged one, 66 for a missing one), then the device (69 without it);
/// `ps` and `vmas` need the device.
#[test]
fn profile_load_checks_the_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("kvm_pfi");
    let prof = dir.path().join("guest.profile");
    let o = tool(&[
        "profile",
        "build",
        "--btf",
        BTF,
        "--system-map",
        MAP,
        "-o",
        s(&prof),
    ]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    let text = std::fs::read_to_string(&prof).unwrap();
    let bad = dir.path().join("bad.profile");
    std::fs::write(
        &bad,
        text.replace("symbol init_task ", "symbol init_tasks "),
    )
    .unwrap();
    let o = tool(&["profile", "load", "--vm", "1", s(&bad), "--device", s(&dev)]);
    assert_eq!(status(&o), 65, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("kvm-pfi: {}: profile line ", bad.display()))
            && err.lines().count() == 1,
        "{err}"
    );
    std::fs::write(&bad, "hello\n").unwrap();
    let o = tool(&["profile", "load", "--vm", "1", s(&bad), "--device", s(&dev)]);
    assert_eq!(status(&o), 65, "{}", stderr(&o));
    assert!(stderr(&o).contains("not a profile"), "{}", stderr(&o));
    let o = tool(&[
        "profile",
        "load",
        "--vm",
        "1",
        s(&dir.path().join("missing")),
        "--device",
        s(&dev),
    ]);
    assert_eq!(status(&o), 66, "{}", stderr(&o));
    let missing_dev = format!(
        "kvm-pfi: open {}: No such file or directory (is the kvm_pfi module loaded?)\n",
        dev.display()
    );
    for args in [
        vec![
            "profile",
            "load",
            "--vm",
            "1",
            s(&prof),
            "--device",
            s(&dev),
        ],
        vec![
            "profile",
            "load",
            "--vm",
            "1",
            s(&prof),
            "--slide",
            "0x200000",
            "--device",
            s(&dev),
        ],
        vec!["ps", "--vm", "1", "--device", s(&dev)],
        vec!["ps", "--vm", "1", "--json", "--device", s(&dev)],
        vec!["vmas", "--vm", "1", "--pid", "1", "--device", s(&dev)],
        vec![
            "vmas",
            "--vm",
            "1",
            "--pid",
            "1",
            "--json",
            "--device",
            s(&dev),
        ],
    ] {
        let o = tool(&args);
        assert_eq!(status(&o), 69, "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), missing_dev, "{args:?}");
    }
    // A slide the module would refuse is a usage error here.
    for args in [
        &[
            "profile",
            "load",
            "--vm",
            "1",
            s(&prof),
            "--slide",
            "0x1001",
        ][..],
        &["profile", "load", "--vm", "1", s(&prof), "--slide", "x"],
        &["profile", "load", s(&prof)],
        &["ps"],
        &["ps", "--vm", "-1"],
        &["vmas", "--vm", "1"],
        &["vmas", "--pid", "1"],
        &["vmas", "--vm", "1", "--pid=-1"],
    ] {
        let o = tool(args);
        assert_eq!(status(&o), 2, "{args:?}: {}", stderr(&o));
    }
    // Without a file the profile is built from the guest's memory: a
    // valid command that goes to the device.
    let o = tool(&["profile", "load", "--vm", "1", "--device", "/nonexistent/kvm_pfi"]);
    assert_eq!(status(&o), 69, "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/kvm_pfi"), "{}", stderr(&o));
}

/// `vmas` (and `ps`) on a file that is no kvm_pfi device: the ioctl fails
/// with ENOTTY, read as a module without Linux guest support (status 1,
/// one line, nothing on stdout).
#[test]
fn vmas_and_ps_of_a_module_without_linux_support() {
    let f = tempfile::NamedTempFile::new().unwrap();
    for (args, ioctl) in [
        (
            vec!["vmas", "--vm", "1", "--pid", "57", "--device", s(f.path())],
            "KVM_PFI_PROCESS_VMAS",
        ),
        (
            vec![
                "vmas",
                "--vm",
                "1",
                "--pid",
                "57",
                "--json",
                "--device",
                s(f.path()),
            ],
            "KVM_PFI_PROCESS_VMAS",
        ),
        (
            vec!["ps", "--vm", "1", "--device", s(f.path())],
            "KVM_PFI_PROCESS_LIST",
        ),
    ] {
        let o = tool(&args);
        assert_eq!(status(&o), 1, "{args:?}: {}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!(
                "kvm-pfi: {ioctl}: the loaded kvm_pfi module has no Linux guest support \
                 (ENOTTY: an older module?)\n"
            ),
            "{args:?}"
        );
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}
