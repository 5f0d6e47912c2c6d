#!/usr/bin/env python3
"""Fails when code outside the model registry decides by a model's name.

Every per-model decision (configuration, FLOPs, bench recipe, capabilities) belongs to the model's
registry entry (src/registry/models.cpp) or the model's own files (src/model/, include/capsnet/model/).
Elsewhere a model name may be chosen (`options.model_name = "baseline-cnn"`) but not compared: a
comparison is a switch that a model registered by another program cannot join.

Found: `==` or `!=` against a registered name or beside `model`/`model_name`, and a registered
name in a hard-coded list of choices (CLI::IsMember). Usage: scripts/model-switch.py [ROOT]
"""
import pathlib
import re
import sys

ALLOWED = ("src/registry/models.cpp", "src/model/", "include/capsnet/model/")


def registered_names(root):
    text = (root / "src/registry/models.cpp").read_text()
    return re.findall(r'info\.name\s*=\s*"([^"]+)"', text)


def offences(root):
    names = registered_names(root)
    if not names:
        yield "src/registry/models.cpp", 0, "no registered model names found (info.name = \"...\")"
        return
    quoted = "|".join(re.escape(n) for n in names)
    patterns = [
        re.compile(r'[!=]=\s*"(%s)"' % quoted),
        re.compile(r'"(%s)"\s*[!=]=' % quoted),
        re.compile(r'\bmodel(_name)?\s*[!=]=\s*"'),
        re.compile(r'"[^"]*"\s*[!=]=\s*[\w.>-]*\bmodel(_name)?\b'),
        re.compile(r'IsMember\(\{[^}]*"(%s)"' % quoted),
    ]
    for base in ("src", "include", "apps"):
        for path in sorted((root / base).rglob("*")):
            if path.suffix not in (".h", ".cpp", ".cu") or not path.is_file():
                continue
            rel = str(path.relative_to(root))
            if rel.startswith(ALLOWED):
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                code = line.split("//")[0]
                if any(p.search(code) for p in patterns):
                    yield rel, number, line.strip()


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    found = list(offences(root))
    for rel, number, line in found:
        print(f"{rel}:{number}: a model name compared outside the registry: {line}",
              file=sys.stderr)
    if found:
        print("fix: give the model's entry (ModelInfo in src/registry/models.cpp) the field or "
              "capability that decides this, and ask the entry", file=sys.stderr)
        return 1
    print(f"no model-name comparison outside the registry ({len(registered_names(root))} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
