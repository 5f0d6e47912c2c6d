#!/usr/bin/env python3
"""Lists the longest function bodies in C++ sources (a brace matcher, not a
parser: comments, strings and raw strings are blanked first; a body is a brace
opened after `)` and qualifiers, outside another function; lambdas count
toward the function that holds them). Issue 20's rule: none over 100 lines.

Usage: scripts/function-lengths.py [--max N] [--max-lines N] [DIR...]   (default: src apps)
Exits 1 when a function is longer than --max (default 100), or when the
sources of DIR... have more than --max-lines lines in all (0: no bound; the
tool's apps/ is held to 1,500 lines and 60-line functions: it only declares
options and calls the library)."""
import argparse
import os
import re
import sys


def blank(src):
    src = re.sub(r'//[^\n]*', '', src)
    src = re.sub(r'/\*.*?\*/', lambda m: '\n' * m.group(0).count('\n'), src, flags=re.S)
    src = re.sub(r'R"(\w*)\((.*?)\)\1"', lambda m: '""' + '\n' * m.group(0).count('\n'), src,
                 flags=re.S)
    src = re.sub(r'"(\\.|[^"\\\n])*"', '""', src)
    return re.sub(r"'(\\.|[^'\\\n])*'", "''", src)


def functions(path):
    s = blank(open(path, encoding='utf-8', errors='replace').read())
    found, stack, line = [], [], 1
    for i, c in enumerate(s):
        if c == '\n':
            line += 1
        elif c == '{':
            before = s[max(0, i - 300):i]
            head = before[before.rfind(';') + 1:]
            is_body = (re.search(r'\)\s*(const|override|noexcept|final|mutable|->\s*[\w:<>,\s*&]+|\s)*$',
                                 before) is not None and
                       re.search(r'\b(if|for|while|switch|catch)\s*\([^{}]*\)\s*$', head) is None)
            outer = not any(entry[0] for entry in stack)
            name = head.strip().split('\n')[-1].strip()[:90] if is_body else ''
            stack.append((is_body and outer, line, name))
        elif c == '}' and stack:
            is_function, start, name = stack.pop()
            if is_function:
                found.append((line - start + 1, path, start, name))
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--max', type=int, default=100)
    parser.add_argument('--top', type=int, default=10)
    parser.add_argument('--max-lines', type=int, default=0)
    parser.add_argument('dirs', nargs='*', default=['src', 'apps'])
    args = parser.parse_args()
    found, total = [], 0
    for root in args.dirs:
        for folder, _, files in os.walk(root):
            sources = [os.path.join(folder, n) for n in files if n.endswith(('.cpp', '.h', '.cu'))]
            found += [f for path in sources for f in functions(path)]
            total += sum(sum(1 for _ in open(path, encoding='utf-8', errors='replace'))
                         for path in sources)
    found.sort(reverse=True)
    for lines, path, start, name in found[:args.top]:
        print(f'{lines:5d}  {path}:{start}  {name}')
    print(f'{total} lines in {" ".join(args.dirs)}')
    status = 0
    over = [f for f in found if f[0] > args.max]
    if over:
        print(f'{len(over)} function(s) over {args.max} lines', file=sys.stderr)
        status = 1
    if args.max_lines and total > args.max_lines:
        print(f'{total} lines, over {args.max_lines}: move what acts into the library',
              file=sys.stderr)
        status = 1
    return status


if __name__ == '__main__':
    sys.exit(main())
