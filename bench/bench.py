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
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCKER_CLI = shutil.which("docker") or "docker"


def pctl(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def rollup(pid: int) -> dict[str, int]:
    """RSS, PSS and USS in KiB."""
    fields: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1])
    except OSError:
        return {"rss": 0, "pss": 0, "uss": 0}
    return {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0),
            "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}


def pids_where(pred) -> list[int]:  # type: ignore[no-untyped-def]
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if pred(int(entry), cmd, cwd):
                found.append(int(entry))
    return found


class Engine:
    name = ""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="adk-bench-", dir="/tmp"))
        self.sock = self.root / "engine.sock"
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}", DOCKER_CONFIG=str(self.root / "cfg"))
        self.proc: subprocess.Popen[bytes] | None = None

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([DOCKER_CLI, *args], env=self.env, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {proc.stderr}")
        return proc

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start")

    def daemon_pids(self) -> list[int]:
        raise NotImplementedError

    def shim_pids(self) -> list[int]:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Aiodock(Engine):
    name = "aiodock"

    def start(self) -> None:
        log = open(self.root / "daemon.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiodock.daemon.main", "-H", f"unix://{self.sock}", "--data-root",
             str(self.root / "data"), "--exec-root", str(self.root / "exec"), "--log-level", "warn",
             "--cgroup-parent", "aiodock-bench"], stdout=log, stderr=log)
        self.wait_ready()

    def daemon_pids(self) -> list[int]:
        assert self.proc is not None
        factory = pids_where(lambda pid, cmd, cwd: "aiodock.shim.factory" in cmd and
                             Path(f"/proc/{pid}/status").read_text().count(f"PPid:\t{self.proc.pid}\n") > 0)
        return [self.proc.pid, *factory]

    def shim_pids(self) -> list[int]:
        exec_root = str(self.root / "exec")
        return pids_where(lambda pid, cmd, cwd: cwd.startswith(exec_root) and "aiodock" in cmd)


class Docker(Engine):
    name = "docker"

    def start(self) -> None:
        log = open(self.root / "daemon.log", "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "-H", f"unix://{self.sock}", "--data-root", str(self.root / "data"), "--exec-root",
             str(self.root / "exec"), "--pidfile", str(self.root / "docker.pid"), "--bridge", "none",
             "--iptables=false", "--ip-masq=false", "--storage-driver", "overlay2", "--cgroup-parent",
             "docker-bench"], stdout=log, stderr=log)
        self.wait_ready()

    def daemon_pids(self) -> list[int]:
        assert self.proc is not None
        containerd = pids_where(lambda pid, cmd, cwd: cmd.startswith("containerd ") and str(self.root) in cmd)
        return [self.proc.pid, *containerd]

    def shim_pids(self) -> list[int]:
        return pids_where(lambda pid, cmd, cwd: "containerd-shim" in cmd and str(self.root) in cmd)


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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
        engine.stop()
        time.sleep(0.5)
        for pid in engine.shim_pids():
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["sh", "-c", f"grep ' {engine.root}' /proc/self/mounts | cut -d' ' -f2 | sort -r | "
                        "xargs -r -n1 umount -l"], check=False)
        shutil.rmtree(engine.root, ignore_errors=True)
        for parent in Path("/sys/fs/cgroup").glob(f"*/{engine.name}-bench"):
            try:
                parent.rmdir()  # the empty cgroup parent the runtime leaves
            except OSError:
                pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("mk", REPO / "scripts" / "mkimage-busybox.py")
    assert spec and spec.loader
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    tar = Path(tempfile.mkdtemp(prefix="adk-bench-img-")) / "busybox.tar"
    mk.build_busybox_image(tar)
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
