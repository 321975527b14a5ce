"""Summarise a py-spy profile in its raw (collapsed stacks) format: where the wall time went.

    python bench/pyspy_summary.py PROFILE.txt --focus measure_enqueue [--top 15]

Only samples whose stack passes through the `--focus` function are counted (so start-up,
imports and other threads drop out), and percentages are of those samples. Recorded with
`--idle`, a sample is wall time whether the thread ran or waited (a lock, fsync, a sleep).
Three views:
  inclusive   the Python functions on the stack (each counted once per sample);
  python line the deepest Python line of each sample: the call that the time went into;
  native      with `--native`: the C functions on the stack (inclusive), e.g. sqlite3_step,
              the busy handler, a WAL checkpoint; and the innermost one (leaf): fsync, write,
              sleeping, ...
The raw file also loads in https://www.speedscope.app for a flame graph.
"""

from __future__ import annotations

import argparse
import re
import sys
import sysconfig
from collections import Counter
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
_ROOTS = [_BENCH.parent / "src", _BENCH, Path(sysconfig.get_paths()["stdlib"]),
          Path(sysconfig.get_paths()["purelib"]),
          *sorted((_BENCH / ".venv-huey" / "lib").glob("python*/site-packages"))]

_FRAME = re.compile(r"^(?P<func>.*) \((?P<where>[^()]*)\)$")
_LINE = re.compile(r":\d+$")


def is_python(frame: str) -> bool:
    m = _FRAME.match(frame)
    if m is None:
        return False
    where = m.group("where")
    return bool(re.search(r"\.py:\d+$", where)) or where.startswith("<")  # <frozen ...>


def without_line(frame: str) -> str:
    m = _FRAME.match(frame)
    if m is None:
        return frame
    return f"{m.group('func')} ({_LINE.sub('', m.group('where'))})"


def source(frame: str) -> str:
    """The text of a Python frame's line, when its file can be found (py-spy gives paths
    relative to sys.path)."""
    m = _FRAME.match(frame)
    if m is None or ":" not in m.group("where"):
        return ""
    name, _, number = m.group("where").rpartition(":")
    for root in _ROOTS:
        try:
            lines = (root / name).read_text().splitlines()
            return lines[int(number) - 1].strip()
        except (OSError, IndexError, ValueError):
            continue
    return ""


def parse(path: Path, focus: str) -> list[tuple[list[str], int]]:
    """The stacks that pass through `focus`, cut to start at it, with their sample counts."""
    stacks = []
    for raw in path.read_text().splitlines():
        stack_text, _, count = raw.rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        frames = stack_text.split(";")
        for i, frame in enumerate(frames):
            if frame.split(" (", 1)[0].endswith(focus):
                stacks.append((frames[i:], int(count)))
                break
    return stacks


def summarise(path: Path, focus: str, top: int = 15) -> str:
    stacks = parse(path, focus)
    total = sum(n for _, n in stacks)
    if not total:
        return f"{path}: no samples pass through {focus!r}"
    inclusive: Counter[str] = Counter()
    line: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    native: Counter[str] = Counter()
    for frames, n in stacks:
        for name in {without_line(f) for f in frames if is_python(f)}:
            inclusive[name] += n
        for name in {without_line(f) for f in frames
                     if not is_python(f) and not f.startswith("0x")}:  # skip bare addresses
            native[name] += n
        py = [f for f in frames if is_python(f)]
        line[py[-1] if py else "?"] += n
        if not is_python(frames[-1]):
            leaf[without_line(frames[-1])] += n

    def block(title: str, counts: Counter[str], show_source: bool = False) -> list[str]:
        out = [f"{title}:"]
        for name, n in counts.most_common(top):
            text = source(name) if show_source else ""
            out.append(f"  {100 * n / total:5.1f}%  {name}" + (f"  | {text}" if text else ""))
        return out

    lines = [f"{path.name}: {total} samples through {focus}"]
    lines += block("inclusive (Python functions)", inclusive)
    lines += block("deepest Python line (where the call went)", line, show_source=True)
    if native:
        lines += block("native inclusive (C functions, with --native)", native)
        lines += block("native leaf", leaf)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="summarise a py-spy raw profile")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--focus", required=True, help="count only stacks through this function")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    print(summarise(args.profile, args.focus, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
