#!/usr/bin/env python3
"""The timing summary that ends `make test`: each ctest run's total and its 10
slowest tests, from the JUnit files ctest writes (--output-junit), so that a
suite's growth shows in every run.

Usage: test-timing.py NAME=JUNIT.xml [NAME=JUNIT.xml ...]
A file that is missing (a run that did not happen) is named and passed over.
"""
import sys
import xml.etree.ElementTree as ElementTree


def outcome(case):
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    return "skipped" if case.find("skipped") is not None else "passed"


def summary(name, path, slowest=10):
    """Prints one run's lines; returns its (seconds, {outcome: count})."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
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
    print(f"{name}: {len(cases)} tests ({counts['failed']} failed), {wall / 60:.1f} min "
          f"({total / 60:.1f} min of test time); the slowest:")
    for seconds, test, result in sorted(cases, reverse=True)[:slowest]:
        print(f"  {seconds:8.1f} s  {test}" + ("" if result == "passed" else f" ({result})"))
    return total, counts


def main(args):
    if not args:
        raise SystemExit(__doc__)
    total, counts = 0.0, {"passed": 0, "failed": 0, "skipped": 0}
    for arg in args:
        name, _, path = arg.partition("=")
        seconds, run = summary(name, path)
        total += seconds
        for key in counts:
            counts[key] += run[key]
    print(f"all runs: {total / 60:.1f} min of test time")
    print(f"tests: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['skipped']} skipped")


if __name__ == "__main__":
    main(sys.argv[1:])
