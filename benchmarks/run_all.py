"""Run every benchmark in turn (`make bench`), each printing its figures beside the baseline
it measures in the same run.

    python -m benchmarks.run_all                 # all of them, full sizes
    python -m benchmarks.run_all --quick         # smaller sizes, for a first look
    python -m benchmarks.run_all --save DIR      # also write each benchmark's JSON to DIR
    python -m benchmarks.run_all --baseline DIR  # compare with JSON saved earlier by --save

No figure is asserted here: targets are printed beside the measurements (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

FULL: dict[str, list[str]] = {
    "bench_nats_cycle": [],
    "bench_inprocess": [],
    "bench_subprocess": [],
    "bench_nats_pipeline": [],
    "bench_worker_memory": [],
    "bench_k8s": [],
    "bench_kb": [],
    "bench_history": [],
    "bench_long_runs": [],
    "bench_console": [],
}
QUICK: dict[str, list[str]] = {
    "bench_nats_cycle": ["-n", "200"],
    "bench_inprocess": [],
    "bench_subprocess": [],
    "bench_nats_pipeline": ["--runs", "40", "--footprint-runs", "200", "--transition-runs", "1"],
    "bench_worker_memory": ["--steps", "16", "--delay", "5"],
    "bench_k8s": ["--reaction-n", "5"],
    "bench_kb": ["--runs", "400"],
    "bench_history": ["--large", "2000", "--open", "500", "--s3-large", "300"],
    "bench_long_runs": ["--long", "200"],
    "bench_console": ["--runs", "2000"],
}


def _command(name: str, extra: list[str], save: Path | None, baseline: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", f"benchmarks.{name}", *extra]
    if baseline is not None and (baseline / f"{name}.json").exists():
        cmd += ["--baseline", str(baseline / f"{name}.json")]
    if save is not None:
        cmd += ["--json"]
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", nargs="*", help="benchmark names to run (default: all)")
    parser.add_argument("--save", type=Path, help="folder to write each benchmark's JSON to")
    parser.add_argument("--baseline", type=Path, help="folder of JSON saved earlier by --save")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    failed = []
    for name, extra in plan.items():
        if args.only and name not in args.only:
            continue
        print(f"\n=== {name}", flush=True)
        cmd = _command(name, extra, args.save, args.baseline)
        done = subprocess.run(cmd, capture_output=args.save is not None, text=True, check=False)
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            (args.save / f"{name}.json").write_text(done.stdout)
            print(done.stdout, end="")
            print(done.stderr, end="", file=sys.stderr)
        if done.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
