// SPDX-License-Identifier: GPL-2.0
//! `make bench` (host part): what a signature scan of a 4 KiB page costs,
//! for a realistic set and for a rule built to be slow, as ratios:
//!
//! - to the floor of any automaton scan (one dependent table lookup per
//!   byte): `ratio <case>_vs_floor`;
//! - to yara-x scanning the same pages with the same rules in this process
//!   (the rule text is YARA; one `Scanner` reused over the pages, as the
//!   tool's `snapshot --yara` does): `ratio pfi_scan_vs_yara_x <r> <case>`,
//!   a time ratio, lower is better.
//!
//! Best of several runs; wall-clock on the host, so ratios are what to
//! compare, not absolute times. It lives in the tool's crate because that
//! one has yara-x; the matcher is the module's own code (`pfi_core::sigs`).
//!
//!   cargo run --release -p kvm-pfi --example scan_throughput

// A host benchmark, not module code.
#![allow(clippy::cast_precision_loss)]

use std::hint::black_box;
use std::time::Instant;

use pfi_core::sigs::{build, validate, Matcher};
use pfi_core::sigs_text::compile;

const PAGES: usize = 256;
const PAGE: usize = 4096;

/// Deterministic bytes (xorshift), so every run scans the same input.
fn bytes(n: usize, mut s: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

/// `n` rules of 12 random bytes with a wildcard and a bounded jump each.
fn realistic_rules(n: usize) -> String {
    let b = bytes(n * 12, 7);
    let mut src = String::new();
    for (i, r) in b.chunks(12).enumerate() {
        let hex: Vec<String> = r.iter().map(|x| format!("{x:02X}")).collect();
        src += &format!(
            "rule r{i} {{ strings: $a = {{ {} ?? {} [0-16] {} }} condition: any of them }}\n",
            hex[..4].join(" "),
            hex[4..8].join(" "),
            hex[8..].join(" ")
        );
    }
    src
}

/// Nanoseconds per page of `f` over the haystack, best of `runs`.
fn per_page(hay: &[u8], runs: usize, mut f: impl FnMut(&[u8])) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        for page in hay.chunks(PAGE) {
            f(black_box(page));
        }
        best = best.min(t.elapsed().as_nanos() as f64 / (hay.len() / PAGE) as f64);
    }
    best
}

fn scanner(src: &str) -> (Vec<u8>, Vec<u32>) {
    let blob = compile(src).expect("rules compile").blob;
    let info = validate(&blob).expect("valid set");
    let mut storage = vec![0u32; info.storage_words];
    build(&blob, &mut storage).expect("built");
    (blob, storage)
}

fn main() {
    let random = bytes(PAGES * PAGE, 1);
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog 0123456789 "
        .iter()
        .cycle()
        .take(PAGES * PAGE)
        .copied()
        .collect();
    let table: Vec<u16> = bytes(2048, 3)
        .chunks(2)
        .map(|c| u16::from(c[0]) << 2 | u16::from(c[1] & 3))
        .collect();
    let read = per_page(&random, 5, |p| {
        let mut s = 0u16;
        for &b in p {
            s = table[(usize::from(s) ^ usize::from(b)) & 1023];
        }
        black_box(s);
    });
    println!("# floor (one dependent lookup per byte): {read:.0} ns per 4 KiB page");
    // 16 pages: a page of this case takes tens of milliseconds.
    let all_a = vec![b'A'; 16 * PAGE];
    let cases = [
        ("500_rules_random_page", realistic_rules(500), &random, 5),
        ("500_rules_text_page", realistic_rules(500), &text, 5),
        // Nibble wildcards and two maximal jumps on a page of 'A's: every
        // byte is an anchor hit with 256 x 256 ways to match around it.
        (
            "slow_rule_all_matching_page",
            "rule w { strings: $a = { 4? [0-256] 4? [0-256] 41 41 } condition: any of them }"
                .to_string(),
            &all_a,
            1,
        ),
    ];
    for (name, src, hay, runs) in cases {
        let (blob, storage) = scanner(&src);
        let m = Matcher::new(&blob, &storage).expect("matcher");
        let mut matches = 0u64;
        let ns = per_page(hay, runs, |p| {
            m.scan(p, &mut |_| {
                matches += 1;
                true
            })
        });
        println!(
            "# {name}: {ns:.0} ns per page, {:.0} MB/s, {matches} matches",
            PAGE as f64 * 1e3 / ns
        );
        println!("ratio {name}_vs_floor {:.1}", ns / read);

        let rules = yara_x::compile(src.as_str()).expect("yara-x compiles the same rules");
        let mut yara = yara_x::Scanner::new(&rules);
        let mut rule_hits = 0u64;
        let yns = per_page(hay, runs, |p| {
            let r = yara.scan(p).expect("yara-x scan");
            rule_hits += r.matching_rules().len() as u64;
        });
        println!(
            "# {name}: yara-x {yns:.0} ns per page, {:.0} MB/s, {rule_hits} matching rules",
            PAGE as f64 * 1e3 / yns
        );
        println!("ratio pfi_scan_vs_yara_x {:.3} {name}", ns / yns);
    }
}
