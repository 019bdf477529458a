#!/usr/bin/env python3
"""Exec latency and attach/logs throughput: aiodock against Docker on this machine, through the same docker CLI.

Usage: python3 bench/bench_exec.py [--runs 30] [--mb 200] [--skip-docker] [--json OUT]

  exec_*        `docker exec ex true` on a running busybox container (--network none), --runs times after a
                warm-up: median and p90 (s)
  attach_mbps   `docker run --rm -v DIR:/payload:ro busybox cat /payload/data`, non-TTY (the framed attach stream
                the CLI demultiplexes), read by this script from the CLI's stdout: MB/s from the first byte to EOF
                (container start is not counted); median of 3. The file: --mb MB of 1000-byte lines, written once
                (busybox's cat of a file is ~20x faster than any in-container generator, so the producer is never
                the bottleneck).
  attach_nolog_mbps the same with --log-driver none (the attach path alone, without the json-file log the
                daemon writes at the same time); None if the engine refuses it
  attach_total_s the same (with the log), wall time of the whole `docker run` including start and removal (median)
  logs_mbps     `docker logs c` of a stopped container that wrote the same N bytes (json-file log): MB/s of the whole
                command (median of 3)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    Aiodock,
    Docker,
    Engine,
    busybox_tar,
    cleanup,
    leftovers,
    loadavg,
    pctl,
    print_table,
    timed,
    write_json,
)


def payload(directory: Path, total: int) -> Path:
    """A directory holding ``data``: ``total`` bytes of 1000-byte lines."""
    (directory / "payload").mkdir()
    line = b"x" * 999 + b"\n"
    with open(directory / "payload" / "data", "wb") as f:
        for _ in range(total // len(line)):
            f.write(line)
        f.write(b"x" * (total % len(line)))
    return directory / "payload"


def producer(data: Path) -> list[str]:
    return ["-v", f"{data}:/payload:ro", "busybox", "cat", "/payload/data"]


def read_stream(engine: Engine, *args: str) -> tuple[int, float, float]:
    """(bytes read from the CLI's stdout, seconds from the first byte to EOF, seconds of the whole command)."""
    start = time.perf_counter()
    proc = engine.popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = 0.0
    size = 0
    while chunk := proc.stdout.read1(1 << 20):
        if not size:
            first = time.perf_counter()
        size += len(chunk)
    end = time.perf_counter()
    if proc.wait(120) != 0:
        raise RuntimeError(f"{engine.name}: docker {' '.join(args)}: {proc.stderr.read().decode() if proc.stderr else ''}")
    done = time.perf_counter()
    return size, end - first, done - start


def measure(engine: Engine, tar: Path, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    total = args.mb * 1_000_000
    try:
        engine.start()
        engine.docker("load", "-i", str(tar))
        engine.docker("run", "-d", "--network", "none", "--name", "ex", "busybox", "sleep", "3600")
        for _ in range(3):
            engine.docker("exec", "ex", "true")  # warm-up
        execs = [timed(lambda: engine.docker("exec", "ex", "true")) for _ in range(args.runs)]
        engine.docker("rm", "-f", "ex")
        stream, whole = [], []
        for _ in range(3):
            size, seconds, wall = read_stream(engine, "run", "--rm", "--network", "none", *producer(data))
            if size != total:
                raise RuntimeError(f"{engine.name}: attach read {size} bytes, expected {total}")
            stream.append(size / seconds / 1e6)
            whole.append(wall)
        nolog: list[float] = []
        for _ in range(3):
            try:
                size, seconds, _ = read_stream(engine, "run", "--rm", "--network", "none", "--log-driver", "none",
                                               *producer(data))
            except RuntimeError as exc:
                print(f"[{engine.name}] --log-driver none: {exc}", flush=True)
                break
            nolog.append(size / seconds / 1e6)
        engine.docker("run", "--name", "logger", "--network", "none", *producer(data),
                      timeout=300)
        logs = []
        for _ in range(3):
            size, _, wall = read_stream(engine, "logs", "logger")
            if size != total:
                raise RuntimeError(f"{engine.name}: logs read {size} bytes, expected {total}")
            logs.append(size / wall / 1e6)
        engine.docker("rm", "-f", "logger")
        return {
            "exec_median_s": statistics.median(execs), "exec_p90_s": pctl(execs, 0.9),
            "attach_mbps": statistics.median(stream),
            "attach_nolog_mbps": statistics.median(nolog) if nolog else None, "attach_total_s": statistics.median(whole),
            "logs_mbps": statistics.median(logs),
        }
    finally:
        cleanup(engine)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="adk-bench-img-"))
    results: dict[str, Any] = {"config": {"runs": args.runs, "mb": args.mb}, "load_before": loadavg()}
    try:
        tar = busybox_tar(work)
        data = payload(work, args.mb * 1_000_000)
        results["aiodock"] = measure(Aiodock(), tar, data, args)
        print("[aiodock]", results["aiodock"], flush=True)
        if not args.skip_docker and shutil.which("dockerd"):
            results["docker"] = measure(Docker(), tar, data, args)
            print("[docker]", results["docker"], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = loadavg()
    results["leftovers"] = leftovers()
    print_table(results)
    print("leftovers after the run:", results["leftovers"])
    print("written", write_json("exec.json", results, args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
