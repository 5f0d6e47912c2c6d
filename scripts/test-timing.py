#!/usr/bin/env python3
"""The timing summary that ends `make test`: each ctest run's wall time, its
test time per label (unit, e2e, slow, minimal, as_avx2) and its 10 slowest
tests, from the JUnit file ctest writes (--output-junit) and the labels ctest
lists (--show-only=json-v1), so that a suite's growth shows in every run.

Usage: test-timing.py NAME=BUILD_DIR [NAME=BUILD_DIR ...]
Reads BUILD_DIR/ctest-junit.xml. A file that is missing (a run that did not
happen) is named and passed over.
"""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree


def outcome(case):
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    return "skipped" if case.find("skipped") is not None else "passed"


def labels_of(build_dir):
    """{test: [labels]} as ctest lists them in `build_dir` ({} if it cannot)."""
    try:
        listing = subprocess.run(["ctest", "--show-only=json-v1"], cwd=build_dir,
                                 capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    labels = {}
    for test in json.loads(listing).get("tests", []):
        for prop in test.get("properties", []):
            if prop.get("name") == "LABELS":
                labels[test["name"]] = prop.get("value", [])
    return labels


def summary(name, build_dir, slowest=10):
    """Prints one run's lines; returns its (seconds, {outcome: count})."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    path = os.path.join(build_dir, "ctest-junit.xml")
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        print(f"{name}: no timings ({path}: {error})")
        return 0.0, counts
    # gtest's parameterised names carry "  # GetParam() = ..." after the name.
    cases = [(float(case.get("time", 0)), case.get("name", "?").split("  #")[0], outcome(case))
             for case in root.iter("testcase")]
    for _, _, result in cases:
        counts[result] += 1
    total = sum(seconds for seconds, _, _ in cases)
    wall = float(root.get("time", total))
    print(f"{name}: {len(cases)} tests ({counts['failed']} failed), {wall / 60:.1f} min wall, "
          f"{total / 60:.1f} min of test time")
    labels = labels_of(build_dir)
    per_label = {}
    for seconds, test, _ in cases:
        for label in labels.get(test, ["(none)"]):
            count, time = per_label.get(label, (0, 0.0))
            per_label[label] = (count + 1, time + seconds)
    for label, (count, time) in sorted(per_label.items()):
        print(f"  label {label:8} {count:3} tests, {time / 60:5.1f} min of test time")
    print("  the slowest:")
    for seconds, test, result in sorted(cases, reverse=True)[:slowest]:
        print(f"  {seconds:8.1f} s  {test}" + ("" if result == "passed" else f" ({result})"))
    return total, counts


def main(args):
    if not args:
        raise SystemExit(__doc__)
    total, counts = 0.0, {"passed": 0, "failed": 0, "skipped": 0}
    for arg in args:
        name, _, build_dir = arg.partition("=")
        seconds, run = summary(name, build_dir)
        total += seconds
        for key in counts:
            counts[key] += run[key]
    print(f"all runs: {total / 60:.1f} min of test time")
    print(f"tests: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['skipped']} skipped")


if __name__ == "__main__":
    main(sys.argv[1:])
