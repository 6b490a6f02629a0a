"""How long ``tts-graph`` takes to print its help or refuse bad input, as a user runs it.

Each case runs the installed console script in a fresh process, ``--repeat`` times after one
warm-up run, and reports the median and the spread of the wall-clock times. ``--tree DIR`` times
the package found in DIR instead of the installed one (e.g. an older revision unpacked with
``git archive``), so two versions can be compared on the same machine in the same minute.

    .venv/bin/python bench/bench_cli_startup.py
    git archive HEAD~1 | tar -x -C /tmp/old
    .venv/bin/python bench/bench_cli_startup.py --tree /tmp/old --tree .
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "tts-graph --help": ["--help"],
    "tts-graph solve --help": ["solve", "--help"],
    "argument error (--n x)": ["solve", "q", "--n", "x"],
    "argument error (--select verified, no verifier)": [
        "solve",
        "q",
        "--select",
        "verified",
        "--base-url",
        "http://127.0.0.1:9/v1",
    ],
    "argument error (--verifier oracle)": [
        "solve",
        "q",
        "--verifier",
        "oracle",
        "--base-url",
        "http://127.0.0.1:9/v1",
    ],
    "argument error (--max-calls -1)": [
        "solve",
        "q",
        "--max-calls",
        "-1",
        "--base-url",
        "http://127.0.0.1:9/v1",
    ],
}


def run_once(args: list[str], tree: Path | None) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of one run. On a busy machine the CPU time
    is what the same run takes on an idle one, near enough: start-up is single-threaded."""
    script = Path(sys.executable).parent / "tts-graph"
    env = dict(os.environ)
    env.pop("TTS_GRAPH_BASE_URL", None)
    if tree is not None:
        env["PYTHONPATH"] = str(tree.resolve())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run([str(script), *args], capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode not in (0, 2):
        raise SystemExit(f"{args} exited with {out.returncode}: {out.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--only", help="run only the cases whose label contains this text")
    parser.add_argument(
        "--tree", type=Path, action="append", help="time the package in this folder (repeatable)"
    )
    opts = parser.parse_args()
    trees: list[Path | None] = list(opts.tree or [None])
    names = [str(t) if t is not None else "installed" for t in trees]
    print(f"| case | {' | '.join(f'{n}: wall median (min-max) | CPU median' for n in names)} |")
    print(f"|---|{'---:|---:|' * len(trees)}")
    for label, args in CASES.items():
        if opts.only and opts.only not in label:
            continue
        walls: list[list[float]] = [[] for _ in trees]
        cpus: list[list[float]] = [[] for _ in trees]
        # Trees take turns, so a change in the machine's load hits them alike.
        for i in range(opts.repeat + 1):
            for k, tree in enumerate(trees):
                wall, cpu = run_once(args, tree)
                if i:  # the first round only warms the page cache
                    walls[k].append(wall)
                    cpus[k].append(cpu)
        cells = [
            f"{statistics.median(w):.3f} s ({min(w):.3f}-{max(w):.3f}) | "
            f"{statistics.median(c):.3f} s"
            for w, c in zip(walls, cpus, strict=True)
        ]
        print(f"| {label} | {' | '.join(cells)} |", flush=True)
    load = os.getloadavg()[0]
    print(f"\n{opts.repeat} runs per cell after one warm-up; load average {load:.2f}")


if __name__ == "__main__":
    main()
