"""Helpers for tests that run real containers: a busybox rootfs and a minimal OCI spec (no mocks)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from aiodock.core.events import Envelope, EventExchange
from aiodock.core.mount import Mount, mounts_under
from aiodock.core.runtime.tasks import TaskManager, TaskSpec

BUSYBOX = Path("/bin/busybox")
TEST_CGROUP_PARENT = "aiodock-test"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def build_busybox_rootfs(target: Path, busybox: Path = BUSYBOX) -> Path:
    """bin/busybox plus one symlink per applet, and the usual empty mount points."""
    for name in ("bin", "proc", "dev", "sys", "tmp", "etc", "root"):
        (target / name).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, target / "bin" / "busybox")
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = target / "bin" / applet
        if applet != "busybox" and not link.exists():
            os.symlink("busybox", link)
    (target / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (target / "etc" / "group").write_text("root:x:0:\n")
    return target


def minimal_spec(args: list[str], container_id: str, *, cwd: str = "/") -> dict[str, Any]:
    """A small OCI runtime spec: pid/ipc/uts/mount/network namespaces, cgroup /aiodock-test/<id>."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": cwd,
            "capabilities": {
                key: ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"]
                for key in ("bounding", "effective", "permitted")
            },
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": container_id[:12],
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
        ],
        "linux": {
            "cgroupsPath": f"/{TEST_CGROUP_PARENT}/{container_id}",
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def cgroup_dirs(container_id: str) -> list[Path]:
    """cgroup v1 (or v2) directories runc made for a test container; empty when cleaned up."""
    found = []
    for path in CGROUP_ROOT.glob(f"*/{TEST_CGROUP_PARENT}/{container_id}"):
        found.append(path)
    direct = CGROUP_ROOT / TEST_CGROUP_PARENT / container_id
    if direct.exists():
        found.append(direct)
    return found


def processes_with_cwd_under(prefix: Path) -> list[int]:
    """Pids whose working directory is under prefix (shims chdir to their bundle)."""
    found = []
    pre = os.path.realpath(prefix)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        cwd = cwd.removesuffix(" (deleted)")
        if cwd == pre or cwd.startswith(pre + "/"):
            found.append(int(entry))
    return found


def pid_alive(pid: int) -> bool:
    """kill -0, and not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in (b"Z", b"X")


class RuntimeHarness:
    """A temp exec root, TaskManagers on it, and a leak check that runs after the test."""

    def __init__(self, rootfs: Path, runtime: str = "runc") -> None:
        self.rootfs = rootfs
        self.runtime = runtime
        self.tmp = Path(tempfile.mkdtemp(prefix="adk-", dir="/tmp"))
        self.exec_root = self.tmp / "run"
        self.grpc_socket = self.tmp / "grpc.sock"
        self.events = EventExchange()
        self.seen: list[Envelope] = []
        self.events.add_listener(self.seen.append)
        self.managers: list[TaskManager] = []
        self.container_ids: list[str] = []
        self.init_pids: set[int] = set()

    async def manager(self, *, load: bool = False) -> TaskManager:
        manager = TaskManager(exec_root=self.exec_root, runtime=self.runtime, events=self.events,
                              grpc_socket=self.grpc_socket)
        await manager.start()
        self.managers.append(manager)
        if load:
            for info in await manager.load_existing():
                if info.pid:
                    self.init_pids.add(info.pid)
        return manager

    def new_id(self, hint: str = "t") -> str:
        cid = f"adk-{hint}-{os.urandom(4).hex()}"
        self.container_ids.append(cid)
        return cid

    def spec(self, container_id: str, args: list[str], *, pid_namespace: bool = True, stdin: bool = False,
             log: bool = True, log_max_size: int | None = None, log_max_files: int = 1,
             namespace: str = "default") -> TaskSpec:
        oci = minimal_spec(args, container_id)
        if not pid_namespace:
            oci["linux"]["namespaces"] = [n for n in oci["linux"]["namespaces"] if n["type"] != "pid"]
        return TaskSpec(
            namespace=namespace, container_id=container_id, spec=oci,
            rootfs=(Mount("bind", str(self.rootfs), ("rbind", "ro")),),
            log_path=self.log_path(container_id) if log else None,
            log_max_size=log_max_size, log_max_files=log_max_files, stdin=stdin,
        )

    def log_path(self, container_id: str) -> Path:
        return self.tmp / f"{container_id}-json.log"

    async def cleanup(self) -> list[str]:
        """Close every manager, force-delete what is left through a fresh one; return the leaks found."""
        for manager in self.managers:
            await manager.close()
        self.managers.clear()
        leftover = [b for b in self.exec_root.glob("*/*") if b.parent.name not in ("s", "runc")]
        if leftover:
            manager = await self.manager(load=True)
            for namespace in sorted({p.parent.name for p in self.exec_root.glob("*/*")} - {"s", "runc"}):
                for info in manager.list(namespace):
                    await manager.delete(namespace, info.container_id, force=True)
            await manager.close()
            self.managers.clear()
        problems: list[str] = []
        if mounts := mounts_under(self.tmp):
            problems.append(f"mounts left: {mounts}")
        if procs := processes_with_cwd_under(self.tmp):
            problems.append(f"processes left in {self.tmp}: {procs}")
        if named := processes_naming(self.container_ids):
            problems.append(f"processes naming the test containers: {named}")
        if alive := [pid for pid in self.init_pids if pid_alive(pid)]:
            problems.append(f"container processes left: {alive}")
        for cid in self.container_ids:
            if dirs := cgroup_dirs(cid):
                problems.append(f"cgroups left: {dirs}")
        runc_states = [str(p) for p in (self.exec_root / "runc").glob("*/*")]
        if runc_states:
            problems.append(f"runc state left: {runc_states}")
        bundles = [str(p) for p in self.exec_root.glob("*/*") if p.parent.name not in ("s", "runc")]
        if bundles:
            problems.append(f"bundles left: {bundles}")
        if not mounts:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return problems


def processes_naming(words: list[str]) -> list[int]:
    """Pids whose command line mentions one of words (e.g. a runc process for a container id)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().decode(errors="replace")
        except OSError:
            continue
        if any(word in cmdline for word in words):
            found.append(int(entry))
    return found
