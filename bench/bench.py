#!/usr/bin/env python3
"""aiodock against Docker on the same machine, through the same docker CLI, in one run.

Usage: python3 bench/bench.py [--runs 20] [--parallel 20] [--skip-docker] [--json OUT]

Each engine gets its own temp data root, exec root and socket; both run `--network none` containers so that
neither pays for bridge networking. Measured: `docker run --rm busybox true` (median, p90); create, start, stop
and rm separately; N containers started at once; daemon RSS idle and with N running; each shim's RSS, PSS and
USS (from /proc/<pid>/smaps_rollup). "daemon_rss" is dockerd + containerd for Docker and the aiodock daemon + its
shim factory for aiodock; "main_process_rss" is dockerd alone and the aiodock daemon alone. Docker's shim is
containerd-shim-runc-v2. Needs root, runc, the docker CLI, and Debian's docker.io for the Docker side.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import Aiodock, Docker, Engine, busybox_tar, cleanup, pctl, rollup, timed


def measure(engine: Engine, image_tar: Path, runs: int, parallel: int) -> dict[str, object]:
    engine.start()
    try:
        engine.docker("load", "-i", str(image_tar))
        time.sleep(1.0)
        idle_rss = sum(rollup(p)["rss"] for p in engine.daemon_pids())
        idle_main = rollup(engine.daemon_pids()[0])["rss"]
        engine.docker("run", "--rm", "--network", "none", "busybox", "true")  # warm-up
        run_rm = [timed(lambda: engine.docker("run", "--rm", "--network", "none", "busybox", "true"))
                  for _ in range(runs)]
        phases: dict[str, list[float]] = {"create": [], "start": [], "stop": [], "rm": []}
        for i in range(max(5, runs // 2)):
            name = f"phase{i}"
            phases["create"].append(timed(lambda name=name: engine.docker(
                "create", "--name", name, "--network", "none", "busybox", "sh", "-c",
                "trap 'exit 0' TERM; while :; do sleep 0.1; done")))
            phases["start"].append(timed(lambda name=name: engine.docker("start", name)))
            phases["stop"].append(timed(lambda name=name: engine.docker("stop", "-t", "5", name)))
            phases["rm"].append(timed(lambda name=name: engine.docker("rm", name)))
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda i: engine.docker("run", "-d", "--network", "none", "--name", f"par{i}",
                                                  "busybox", "sleep", "600"), range(parallel)))
        parallel_wall = time.perf_counter() - start
        time.sleep(1.0)
        busy_rss = sum(rollup(p)["rss"] for p in engine.daemon_pids())
        busy_main = rollup(engine.daemon_pids()[0])["rss"]
        shims = [rollup(p) for p in engine.shim_pids()]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: engine.docker("rm", "-f", f"par{i}", check=False), range(parallel)))
        return {
            "run_rm_median": statistics.median(run_rm), "run_rm_p90": pctl(run_rm, 0.9),
            **{f"{k}_median": statistics.median(v) for k, v in phases.items()},
            "parallel_wall": parallel_wall, "parallel": parallel,
            "daemon_rss_idle_kib": idle_rss, "daemon_rss_busy_kib": busy_rss,
            "main_process_rss_idle_kib": idle_main, "main_process_rss_busy_kib": busy_main,
            "shims": len(shims),
            "shim_rss_kib": statistics.median(s["rss"] for s in shims) if shims else 0,
            "shim_pss_kib": statistics.median(s["pss"] for s in shims) if shims else 0,
            "shim_uss_kib": statistics.median(s["uss"] for s in shims) if shims else 0,
        }
    finally:
        cleanup(engine)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tar = busybox_tar(Path(tempfile.mkdtemp(prefix="adk-bench-img-")))
    results = {"aiodock": measure(Aiodock(), tar, args.runs, args.parallel)}
    if not args.skip_docker and shutil.which("dockerd"):
        results["docker"] = measure(Docker(), tar, args.runs, args.parallel)
    shutil.rmtree(tar.parent, ignore_errors=True)
    keys = list(results["aiodock"])
    print(f"{'metric':24} {'aiodock':>12} {'docker':>12} {'aiodock/docker':>15}")
    for key in keys:
        a = results["aiodock"][key]
        d = results.get("docker", {}).get(key)
        ratio = f"{a / d:.2f}" if isinstance(d, (int, float)) and d else "-"
        fmt = (lambda v: f"{v:.3f}" if isinstance(v, float) else str(v))
        print(f"{key:24} {fmt(a):>12} {fmt(d) if d is not None else '-':>12} {ratio:>15}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
