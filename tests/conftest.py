"""Shared fixtures: real aiodock daemons in temp dirs, the offline busybox image, and leak checks."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aiodock.core.runtime.testing import processes_with_cwd_under
from aiodock.proxy.loop import new_event_loop

REPO = Path(__file__).resolve().parent.parent
DOCKER = shutil.which("docker")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Async tests run on asyncio's default loop; those marked relay_loop also on the daemon's own loop."""
    if item.get_closest_marker("relay_loop"):
        return {"asyncio-loop": asyncio.new_event_loop, "relay-loop": new_event_loop}
    return {"asyncio-loop": asyncio.new_event_loop}


def _load_mkimage():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mkimage_busybox", REPO / "scripts" / "mkimage-busybox.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("images") / "busybox.tar"
    _load_mkimage().build_busybox_image(out, tag="busybox:latest")
    return out


def _http(sock: str, method: str, path: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, bytes]:
    import http.client
    import socket

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(sock)

    conn = UnixConnection("localhost", timeout=timeout)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def tar_of(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar archive of regular files, entry names taken as given (hostile ones too)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def cgroups_under(parent: str) -> list[str]:
    base = Path("/sys/fs/cgroup")
    found = []
    for controller in base.iterdir() if base.exists() else []:
        path = controller / parent
        if path.exists():
            found += [str(p) for p in path.iterdir() if p.is_dir()]
    if (base / parent).exists() and (base / "cgroup.controllers").exists():
        found += [str(p) for p in (base / parent).iterdir() if p.is_dir()]
    return found


def _bridge_for(root: Path) -> tuple[str, str]:
    """Bridge "adk" + the root's last 6 chars and a 172.30.N.0/24 subnet (N from the root name, skipping subnets
    already on this host), so daemons running side by side never share a bridge or a subnet."""
    import zlib

    used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True, check=False).stdout
    n = zlib.crc32(root.name.encode()) % 254 + 1
    for _ in range(254):
        if f"172.30.{n}." not in used:
            break
        n = n % 254 + 1
    return "adk" + root.name[-6:], f"172.30.{n}.1/24"


class Daemon:
    """A real `aiodock daemon` process with its own sockets, data root, exec root and cgroup parent."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.data_root = root / "data"
        self.exec_root = root / "exec"
        self.grpc_socket = self.exec_root / "containerd" / "containerd.sock"
        self.cgroup_parent = f"aiodock-test-{root.name[-8:]}"
        self.log_path = root / "daemon.log"
        self.docker_config = root / "docker-config"
        self.docker_config.mkdir(exist_ok=True)
        self.bridge_name, self.bip = _bridge_for(root)  # each daemon its own bridge and subnet (issue #5)
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = dict(os.environ, DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.docker_config))
        self.extra_args: list[str] = []  # more daemon flags, for every start

    def start(self, *extra: str) -> None:
        """Start the daemon with its test flags, ``extra_args`` and ``extra``; return once it answers /_ping."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiodock.daemon.main", "-H", self.host, "--data-root", str(self.data_root),
             "--exec-root", str(self.exec_root), "--cgroup-parent", self.cgroup_parent, "--log-format", "console",
             "--log-level", "debug", "--bridge-name", self.bridge_name, "--bip", self.bip, *self.extra_args,
             *extra],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                status, _ = self.api("GET", "/_ping", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("daemon did not answer /_ping:\n" + self.log_path.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def api(self, method: str, path: str, body: object | None = None, timeout: float = 60) -> tuple[int, bytes]:
        raw = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        return _http(str(self.socket), method, path, raw, timeout)

    def json(self, method: str, path: str, body: object | None = None) -> object:
        status, data = self.api(method, path, body)
        assert status < 300, (status, data)
        return json.loads(data) if data else None

    def docker(self, *args: str, input: bytes | None = None, timeout: float = 60,
               check: bool = False) -> subprocess.CompletedProcess[str]:
        assert DOCKER, "the docker CLI is needed"
        proc = subprocess.run([DOCKER, *args], env=self.env, input=input.decode() if input else None,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def load(self, tar: Path) -> None:
        with open(tar, "rb") as fh:
            status, data = self.api("POST", "/images/load?quiet=1", fh.read())
        assert status == 200, data

    def remove_all_containers(self) -> None:
        status, data = self.api("GET", "/containers/json?all=1")
        if status != 200:
            return
        for item in json.loads(data):
            self.api("DELETE", f"/containers/{item['Id']}?force=1")

    def assert_clean(self) -> None:
        """Nothing of this daemon's may be left: processes, mounts, cgroups."""
        deadline = time.monotonic() + 10
        while True:
            procs = processes_with_cwd_under(self.root)
            mounts = mounts_under(self.root)
            cgroups = cgroups_under(self.cgroup_parent)
            if not (procs or mounts or cgroups) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert not procs, f"processes left behind: {procs}"
        assert not mounts, f"mounts left behind: {mounts}"
        assert not cgroups, f"cgroups left behind: {cgroups}"
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False).stdout
        assert f" {self.bridge_name}:" not in links, f"bridge {self.bridge_name} left behind"
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
        assert self.bridge_name not in rules, f"iptables rules of {self.bridge_name} left behind"

    def destroy(self) -> None:
        """Tear down whatever a failed test left, so the machine stays clean either way."""
        for pid in processes_with_cwd_under(self.root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["runc", "--root", str(self.exec_root / "runc" / "moby"), "list", "-q"],
                       capture_output=True, check=False)
        for point in sorted(mounts_under(self.root), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        base = Path("/sys/fs/cgroup")
        for controller in base.iterdir() if base.exists() else []:
            parent = controller / self.cgroup_parent
            if parent.exists():
                for child in parent.iterdir():
                    if child.is_dir():
                        try:
                            child.rmdir()
                        except OSError:
                            pass
                try:
                    parent.rmdir()
                except OSError:
                    pass
        from aiodock.network import bridge, nat

        nat.cleanup_all(self.bridge_name)
        bridge.delete(self.bridge_name)
        shutil.rmtree(self.root, ignore_errors=True)


def new_daemon_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="adk-", dir="/tmp"))


@pytest.fixture(scope="module")
def daemon(busybox_tar: Path) -> Iterator[Daemon]:
    d = Daemon(new_daemon_root())
    try:
        d.start()  # inside the try: a daemon that fails to start leaves nothing either
        d.load(busybox_tar)
        yield d
        d.remove_all_containers()
        d.stop()
        d.assert_clean()
    finally:
        d.stop()
        d.destroy()


@pytest.fixture
def fresh_daemon(busybox_tar: Path) -> Iterator[Daemon]:
    """A daemon of the test's own, for restart and kill -9 tests."""
    d = Daemon(new_daemon_root())
    try:
        d.start()
        d.load(busybox_tar)
        yield d
        if d.proc is None:
            d.start()
        d.remove_all_containers()
        d.stop()
        d.assert_clean()
    finally:
        d.stop()
        d.destroy()


@pytest.fixture
def busybox(daemon: Daemon) -> str:
    return "busybox:latest"


def quote_filters(filters: dict[str, list[str]]) -> str:
    return urllib.parse.quote(json.dumps(filters))


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:  # gone meanwhile
        return ""


def _leftovers() -> dict[str, list[str]]:
    base = Path("/sys/fs/cgroup")
    cgroup_children = []
    for controller in base.iterdir() if base.exists() else []:
        for parent in controller.glob("aiodock-*") if controller.is_dir() else []:
            cgroup_children += [str(p) for p in parent.iterdir() if p.is_dir()]
    tmp = Path("/tmp")
    with open("/proc/self/mountinfo") as fh:
        mounts = [ln.split()[4] for ln in fh if ln.split()[4].startswith("/tmp/adk-")]
    procs = [str(pid) for pid in processes_with_cwd_under(Path("/tmp")) if _cwd(pid).startswith("/tmp/adk-")]
    dirs = [str(p) for p in tmp.glob("adk-*") if not p.name.startswith("adk-bench")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False).stdout
    bridges = [ln.split(":")[1].strip() for ln in links.splitlines() if ln.split(":")[1].strip().startswith("adk")]
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    chains = [ln for ln in rules.splitlines() if "ADK-" in ln]
    return {"cgroups": cgroup_children, "mounts": mounts, "processes": procs, "dirs": dirs, "links": bridges,
            "iptables": chains}


@pytest.fixture(scope="session", autouse=True)
def nothing_leaks() -> Iterator[None]:
    """After the whole suite: no container cgroups, mounts, shim or container processes, or temp dirs of ours."""
    before = _leftovers()
    yield
    deadline = time.monotonic() + 10
    while True:
        after = _leftovers()
        leaked = {k: sorted(set(v) - set(before[k])) for k, v in after.items()}
        if not any(leaked.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    base = Path("/sys/fs/cgroup")
    for controller in base.iterdir() if base.exists() else []:
        for parent in controller.glob("aiodock-test*") if controller.is_dir() else []:
            try:
                parent.rmdir()  # the empty parent runc leaves behind
            except OSError:
                pass
    assert not any(leaked.values()), f"left behind by the suite: {leaked}"
