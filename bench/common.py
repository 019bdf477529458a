"""Shared helpers of the benchmarks in bench/: the two engines (aiodock, Docker's dockerd + containerd), each with
its own temp root and socket and driven through the same docker CLI, process memory from /proc, the busybox test
image, and the cleanup that leaves nothing behind (mounts, cgroups, Docker's docker0 bridge and DOCKER* iptables
chains, aiodock's bridge).

Import it from a script in bench/ (``from common import ...``); bench/ is on sys.path when the script runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
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


def ppid(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Engine:
    name = ""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="adk-bench-", dir="/tmp"))
        self.sock = self.root / "engine.sock"
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}", DOCKER_CONFIG=str(self.root / "cfg"))
        self.proc: subprocess.Popen[bytes] | None = None

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([DOCKER_CLI, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {proc.stderr}")
        return proc

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen([DOCKER_CLI, *args], env=self.env, **kw)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start: {(self.root / 'daemon.log').read_text()[-2000:]}")

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
                self.proc.wait()


class Aiodock(Engine):
    """The aiodock daemon. ``bridge`` = (bridge name, gateway/prefix) for benchmarks that use the bridge network,
    so the bench daemon never shares a bridge or subnet with another daemon on the machine."""

    name = "aiodock"

    def __init__(self, bridge: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.bridge = bridge

    def start(self) -> None:
        log = open(self.root / "daemon.log", "wb")
        extra = ["--bridge-name", self.bridge[0], "--bip", self.bridge[1]] if self.bridge else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiodock.daemon.main", "-H", f"unix://{self.sock}", "--data-root",
             str(self.root / "data"), "--exec-root", str(self.root / "exec"), "--log-level", "warn",
             "--cgroup-parent", "aiodock-bench", *extra], stdout=log, stderr=log, cwd=REPO)
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
    """Debian's dockerd (with its own containerd). ``network=False``: no bridge and no iptables (bench.py, which
    runs --network none containers); ``network=True``: Docker's defaults (docker0 172.17.0.0/16, iptables, the
    userland docker-proxy), removed again by cleanup_docker_network()."""

    name = "docker"

    def __init__(self, network: bool = False) -> None:
        super().__init__()
        self.network = network

    def start(self) -> None:
        log = open(self.root / "daemon.log", "wb")
        net = [] if self.network else ["--bridge", "none", "--iptables=false", "--ip-masq=false"]
        self.proc = subprocess.Popen(
            ["dockerd", "-H", f"unix://{self.sock}", "--data-root", str(self.root / "data"), "--exec-root",
             str(self.root / "exec"), "--pidfile", str(self.root / "docker.pid"), *net,
             "--storage-driver", "overlay2", "--cgroup-parent", "docker-bench"], stdout=log, stderr=log)
        self.wait_ready()

    def daemon_pids(self) -> list[int]:
        assert self.proc is not None
        containerd = pids_where(lambda pid, cmd, cwd: cmd.startswith("containerd ") and str(self.root) in cmd)
        return [self.proc.pid, *containerd]

    def shim_pids(self) -> list[int]:
        return pids_where(lambda pid, cmd, cwd: "containerd-shim" in cmd and str(self.root) in cmd)

    def proxy_pids(self) -> list[int]:
        """docker-proxy processes of this dockerd."""
        assert self.proc is not None
        mine = self.proc.pid
        return pids_where(lambda pid, cmd, cwd: "docker-proxy" in cmd.split(" ", 1)[0] and ppid(pid) == mine)


def cleanup(engine: Engine) -> None:
    """Stop the daemon and remove everything it left: shims, mounts under its root, its root, its cgroup parent."""
    engine.stop()
    time.sleep(0.5)
    for pid in engine.shim_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["sh", "-c", f"grep ' {engine.root}' /proc/self/mounts | cut -d' ' -f2 | sort -r | "
                    "xargs -r -n1 umount -l"], check=False)
    shutil.rmtree(engine.root, ignore_errors=True)
    for parent in Path("/sys/fs/cgroup").glob(f"*/{engine.name}-bench"):
        try:
            parent.rmdir()  # the empty cgroup parent the runtime leaves
        except OSError:
            pass


def cleanup_docker_network(forward_policy: str = "ACCEPT") -> list[str]:
    """Remove what dockerd's bridge driver leaves behind (dockerd must be stopped): the docker0 bridge, every rule
    that jumps to a DOCKER* chain or names docker0 in the filter and nat tables, the DOCKER* chains themselves;
    and put the FORWARD policy back. Other daemons' rules (aiodock's ADK-* chains) are not touched. Returns what
    was removed."""
    removed: list[str] = []
    for table in ("filter", "nat"):
        lines = subprocess.run(["iptables", "-w", "5", "-t", table, "-S"], capture_output=True, text=True,
                               check=False).stdout.splitlines()
        for line in lines:
            if line.startswith("-A ") and not line.split()[1].startswith("DOCKER") and (
                    "DOCKER" in line or "docker0" in line or "172.17.0.0/16" in line):
                subprocess.run(["iptables", "-w", "5", "-t", table, "-D", *shlex.split(line)[1:]], check=False)
                removed.append(f"{table}: {line}")
        chains = [line.split()[1] for line in lines if line.startswith("-N DOCKER")]
        for chain in chains:
            subprocess.run(["iptables", "-w", "5", "-t", table, "-F", chain], check=False)
        for chain in chains:
            subprocess.run(["iptables", "-w", "5", "-t", table, "-X", chain], check=False)
            removed.append(f"{table}: chain {chain}")
    subprocess.run(["iptables", "-w", "5", "-P", "FORWARD", forward_policy], check=False)
    if Path("/sys/class/net/docker0").exists():
        subprocess.run(["ip", "link", "del", "docker0"], check=False)
        removed.append("link docker0")
    return removed


def forward_policy() -> str:
    out = subprocess.run(["iptables", "-w", "5", "-S", "FORWARD"], capture_output=True, text=True,
                         check=False).stdout
    for line in out.splitlines():
        if line.startswith("-P FORWARD"):
            return line.split()[2]
    return "ACCEPT"


def cleanup_aiodock_network(bridge: str) -> list[str]:
    """Remove the bench daemon's bridge and ADK-*-<bridge> chains if the daemon left them (it should not)."""
    removed: list[str] = []
    for table in ("filter", "nat"):
        lines = subprocess.run(["iptables", "-w", "5", "-t", table, "-S"], capture_output=True, text=True,
                               check=False).stdout.splitlines()
        for line in lines:
            if line.startswith("-A ") and not line.split()[1].startswith("ADK-") and bridge in line:
                subprocess.run(["iptables", "-w", "5", "-t", table, "-D", *shlex.split(line)[1:]], check=False)
                removed.append(f"{table}: {line}")
        chains = [line.split()[1] for line in lines if line.startswith("-N ADK-") and line.endswith(bridge)]
        for chain in chains:
            subprocess.run(["iptables", "-w", "5", "-t", table, "-F", chain], check=False)
            subprocess.run(["iptables", "-w", "5", "-t", table, "-X", chain], check=False)
            removed.append(f"{table}: chain {chain}")
    if Path(f"/sys/class/net/{bridge}").exists():
        subprocess.run(["ip", "link", "del", bridge], check=False)
        removed.append(f"link {bridge}")
    return removed


def free_bridge() -> tuple[str, str]:
    """A bridge name and a 10.231.N.1/24 subnet not on this host (tests use 172.30.N.0/24, Docker 172.17/16)."""
    used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True, check=False).stdout
    for n in range(1, 255):
        if f"10.231.{n}." not in used:
            return f"adkbench{os.getpid() % 10000}", f"10.231.{n}.1/24"
    raise RuntimeError("no free subnet")


def leftovers() -> dict[str, list[str]]:
    """What Docker or the bench could leave on the host: dockerd/containerd/docker-proxy/docker-registry
    processes, docker0/bench bridges, DOCKER* or bench iptables lines, bench netns mounts."""
    procs = pids_where(lambda pid, cmd, cwd: cmd.split(" ", 1)[0].rsplit("/", 1)[-1] in ("dockerd", "docker-proxy")
                       or cwd.startswith("/tmp/adk-bench-") or (
                           cmd.split(" ", 1)[0].rsplit("/", 1)[-1] in (
                               "containerd", "containerd-shim-runc-v2", "docker-registry", "netsrv", "runc")
                           and "/tmp/adk-bench-" in cmd))
    links = [name for name in os.listdir("/sys/class/net") if name == "docker0" or name.startswith("adkbench")]
    rules = [line for line in subprocess.run(["iptables-save"], capture_output=True, text=True,
                                             check=False).stdout.splitlines()
             if "DOCKER" in line or "docker0" in line or "adkbench" in line]
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
              if "adk-bench" in line]
    return {"processes": [str(p) for p in procs], "links": links, "iptables": rules, "mounts": mounts}


def busybox_tar(directory: Path) -> Path:
    """The busybox image (scripts/mkimage-busybox.py) as a docker-save tarball in ``directory``."""
    spec = importlib.util.spec_from_file_location("mk", REPO / "scripts" / "mkimage-busybox.py")
    assert spec and spec.loader
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    tar = directory / "busybox.tar"
    mk.build_busybox_image(tar)
    return tar


def ratio(a: object, d: object) -> str:
    if isinstance(a, (int, float)) and isinstance(d, (int, float)) and d:
        return f"{a / d:.2f}"
    return "-"


def print_table(results: dict[str, dict[str, Any]], extras: tuple[str, ...] = ()) -> None:
    """metric | aiodock | docker | aiodock/docker [| extra columns, e.g. the direct and loopback limits]."""
    fmt = (lambda v: "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v))
    head = f"{'metric':34} {'aiodock':>12} {'docker':>12} {'aiodock/docker':>15}"
    print(head + "".join(f" {e:>14}" for e in extras))
    keys = [k for k in results["aiodock"] if not isinstance(results["aiodock"][k], (dict, list))]
    for key in keys:
        a = results["aiodock"].get(key)
        d = results.get("docker", {}).get(key)
        line = f"{key:34} {fmt(a):>12} {fmt(d):>12} {ratio(a, d):>15}"
        line += "".join(f" {fmt(results.get(e, {}).get(key)):>14}" for e in extras)
        print(line)


def write_json(name: str, results: dict[str, Any], out: Path | None) -> Path:
    path = out or RESULTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def median(values: list[float]) -> float:
    return statistics.median(values)
