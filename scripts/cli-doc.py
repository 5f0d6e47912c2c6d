#!/usr/bin/env python3
"""docs/cli.md, the command-line reference, generated from the binary: the
commands as `capsnet --list-options` lists them, each with its `--help`.

Usage: cli-doc.py CAPSNET > docs/cli.md           (regenerate the page)
       cli-doc.py CAPSNET --check docs/cli.md     (fail when the page differs)
The check runs in make test (ctest cli_doc), on the full build: a build that
leaves commands out prints other help.
"""
import difflib
import json
import subprocess
import sys

REGENERATE = "python3 scripts/cli-doc.py build/capsnet > docs/cli.md"


def run(binary, *args):
    # argv[0] "capsnet", as a user who installed it types it: the help's usage
    # line names the program by argv[0].
    result = subprocess.run(["capsnet", *args], executable=binary, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"cli-doc: {binary} {' '.join(args)} exited {result.returncode}: "
                         f"{result.stderr.strip()}")
    return result.stdout


def page(binary):
    commands = [json.loads(line) for line in run(binary, "--list-options").splitlines() if line]
    lines = [
        "# Command-line reference",
        "",
        "Generated from the binary by `scripts/cli-doc.py` (`capsnet --list-options`",
        "and each command's `--help`); `make test` fails when this page differs from",
        f"what the binary prints. Regenerate it with `{REGENERATE}`.",
        "",
        "Commands:",
        "",
    ]
    for command in commands:
        name = command["command"]
        lines.append(f"- [`capsnet {name}`](#capsnet-{name.replace(' ', '-')})")
    lines += ["", "## capsnet", "", "```", run(binary, "--help").rstrip(), "```"]
    for command in commands:
        name = command["command"]
        lines += ["", f"## capsnet {name}", ""]
        if not command.get("in_build", True):
            lines.append("Not in this build.")
            continue
        lines += ["```", run(binary, *name.split(), "--help").rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(args):
    if len(args) == 1:
        sys.stdout.write(page(args[0]))
        return 0
    if len(args) == 3 and args[1] == "--check":
        want = page(args[0])
        try:
            have = open(args[2]).read()
        except OSError as error:
            have = ""
            print(f"cli-doc: {error}", file=sys.stderr)
        if have == want:
            print(f"cli-doc: {args[2]} matches the binary's help")
            return 0
        sys.stdout.writelines(difflib.unified_diff(have.splitlines(True), want.splitlines(True),
                                                   args[2], "the binary's help", n=1))
        print(f"cli-doc: {args[2]} differs from what the binary prints (above); regenerate it: "
              f"{REGENERATE}", file=sys.stderr)
        return 1
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
