# SPDX-License-Identifier: GPL-2.0
"""The checks of a Python selftests story and their KTAP report, for
watch_events.py, linux_walk.py and formats_test.py."""

results = []


def check(name, cond, detail=""):
    """Records check `name`; prints `detail` (cut to 3000 characters) when it fails."""
    results.append((name, bool(cond)))
    if not cond:
        print(f"# {name}: {str(detail)[:3000]}")
    return cond


def report(totals=False):
    """Prints every check as KTAP (and, with totals, an "N passed, M failed"
    line); returns the exit status: 0 if there were checks and all passed."""
    print("KTAP version 1")
    print(f"1..{len(results)}")
    for i, (name, ok) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} {name}")
    passed = sum(ok for _, ok in results)
    if totals:
        print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if results and passed == len(results) else 1
