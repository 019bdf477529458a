"""One test per OCI feature (youki's contest style): real containers run by the real runc.

Each test builds a bundle in a temp dir (busybox rootfs, ``config.json`` made by aiodock.core.oci), runs it with
``runc --root <tmp> run`` in the foreground and checks what a user sees inside the container.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aiodock.core.oci import opts
from aiodock.core.oci.capabilities import DEFAULT_CAPABILITIES, capability_mask, host_capabilities
from aiodock.core.oci.seccomp import default_profile
from aiodock.core.oci.spec import default_spec
from aiodock.core.oci.user import resolve_user
from aiodock.errors import InvalidArgument

RUNC = shutil.which("runc") or "/usr/sbin/runc"
BUSYBOX = "/bin/busybox"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists(RUNC), reason="needs runc"),
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs a static busybox"),
]

PASSWD = "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000:Bob:/home/bob:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
GROUP = "root:x:0:\nbob:x:1000:\nextra:x:2000:bob\nstaff:x:50:\nnogroup:x:65534:\n"


def make_rootfs(rootfs: Path) -> None:
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (rootfs / "bin" / applet).symlink_to("busybox")
    for directory in ("proc", "sys", "dev", "tmp", "etc", "root", "home/bob", "mnt"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class Bundle:
    """A runc bundle in a temp dir; ``run`` writes the spec and runs the container to completion."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.path = workdir / "bundle"
        self.rootfs = self.path / "rootfs"
        self.state_root = workdir / "runc"
        self.container_id = "adk-" + uuid.uuid4().hex[:12]
        self.cgroups_path = f"/{self.container_id}"
        self.state_root.mkdir()
        make_rootfs(self.rootfs)
        self.spec: dict[str, Any] = default_spec(self.container_id, cgroups_path=self.cgroups_path)

    def run(self, script: str, timeout: float = 20) -> Result:
        opts.with_process_args(self.spec, ["sh", "-c", script])
        (self.path / "config.json").write_text(json.dumps(self.spec))
        proc = subprocess.run(
            [RUNC, "--root", str(self.state_root), "run", "--bundle", str(self.path), self.container_id],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def cleanup(self) -> None:
        subprocess.run(
            [RUNC, "--root", str(self.state_root), "delete", "-f", self.container_id],
            capture_output=True,
            check=False,
        )
        for controller in Path("/sys/fs/cgroup").iterdir():
            leftover = controller / self.container_id
            if leftover.is_dir():
                try:
                    leftover.rmdir()
                except OSError:
                    pass
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture
def bundle() -> Iterator[Bundle]:
    made = Bundle(Path(tempfile.mkdtemp(prefix="adk-", dir="/tmp")))
    try:
        yield made
    finally:
        made.cleanup()


def status_field(output: str, field: str) -> str:
    for line in output.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{field} not in {output!r}")


def mount_options(output: str, mount_point: str) -> list[str]:
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == mount_point:
            return fields[3].split(",")
    raise AssertionError(f"{mount_point} not in {output!r}")


def test_default_capabilities(bundle: Bundle) -> None:
    result = bundle.run("cat /proc/self/status")
    assert result.returncode == 0, result.stderr
    expected = f"{capability_mask(DEFAULT_CAPABILITIES):016x}"
    assert status_field(result.stdout, "CapEff") == expected == "00000000a80425fb"
    assert status_field(result.stdout, "CapBnd") == expected
    assert status_field(result.stdout, "CapInh") == "0" * 16
    assert status_field(result.stdout, "CapAmb") == "0" * 16


def test_capabilities_add_and_drop(bundle: Bundle) -> None:
    opts.with_capabilities(bundle.spec, add=["net_admin", "CAP_SYS_TIME"], drop=["chown"])
    result = bundle.run("touch /tmp/f; chown 1 /tmp/f 2>&1; echo chown=$?; cat /proc/self/status")
    assert result.returncode == 0, result.stderr
    caps = [c for c in DEFAULT_CAPABILITIES if c != "CAP_CHOWN"] + ["CAP_NET_ADMIN", "CAP_SYS_TIME"]
    assert status_field(result.stdout, "CapEff") == f"{capability_mask(caps):016x}"
    assert "Operation not permitted" in result.stdout and "chown=1" in result.stdout
    with pytest.raises(InvalidArgument, match='unknown capability: "CAP_FOO"'):
        opts.with_capabilities(bundle.spec, add=["foo"], drop=[])


def test_capabilities_drop_all(bundle: Bundle) -> None:
    opts.with_capabilities(bundle.spec, add=["KILL"], drop=["ALL"])
    result = bundle.run("cat /proc/self/status")
    assert result.returncode == 0, result.stderr
    assert status_field(result.stdout, "CapEff") == f"{capability_mask(['CAP_KILL']):016x}"


def test_privileged(bundle: Bundle) -> None:
    opts.with_privileged(bundle.spec)
    result = bundle.run("cat /proc/self/status; grep -E ' /sys(/fs/cgroup)? ' /proc/mounts; echo timer_list=$(wc -c < /proc/timer_list)")
    assert result.returncode == 0, result.stderr
    assert status_field(result.stdout, "CapEff") == f"{capability_mask(host_capabilities()):016x}"
    assert status_field(result.stdout, "Seccomp") == "0"
    assert "rw" in mount_options(result.stdout, "/sys")
    assert "timer_list=0" not in result.stdout  # /proc/timer_list is not masked


def test_masked_paths(bundle: Bundle) -> None:
    # This kernel has no /proc/kcore; /proc/timer_list and /proc/keys are masked files, /sys/firmware a directory.
    assert Path("/proc/timer_list").read_bytes() and Path("/proc/interrupts").read_bytes()
    result = bundle.run(
        "wc -c < /proc/timer_list; wc -c < /proc/interrupts; stat -c '%t:%T' /proc/keys; ls -A /sys/firmware | wc -l"
    )
    assert result.returncode == 0, result.stderr
    timer_list, interrupts, device, entries = result.stdout.split()
    assert timer_list == interrupts == "0"  # reading a masked file gives nothing: /dev/null is bound over it
    assert device == "1:3"
    assert entries == "0"  # an empty read-only tmpfs hides the directory


def test_readonly_paths(bundle: Bundle) -> None:
    result = bundle.run(
        "echo 1 > /proc/sys/kernel/ns_last_pid; echo status=$?; "
        "echo h > /proc/sysrq-trigger; echo status=$?; cat /proc/mounts"
    )
    assert result.returncode == 0
    assert result.stdout.count("status=1") == 2
    assert "Read-only file system" in result.stderr
    assert "ro" in mount_options(result.stdout, "/proc/sys")


def test_readonly_rootfs(bundle: Bundle) -> None:
    opts.with_readonly_rootfs(bundle.spec)
    result = bundle.run("touch /newfile; echo root=$?; touch /dev/shm/ok; echo shm=$?")
    assert "root=1" in result.stdout and "shm=0" in result.stdout
    assert "Read-only file system" in result.stderr
    assert not (bundle.rootfs / "newfile").exists()


def test_user_resolution(bundle: Bundle) -> None:
    uid, gid, groups = resolve_user(bundle.rootfs, "bob")
    assert (uid, gid, groups) == (1000, 1000, [2000])
    opts.with_user(bundle.spec, uid, gid, groups)
    assert bundle.run("id").stdout.strip() == "uid=1000(bob) gid=1000(bob) groups=2000(extra)"

    assert resolve_user(bundle.rootfs, "bob:staff") == (1000, 50, [])
    assert resolve_user(bundle.rootfs, "4242") == (4242, 0, [])
    assert resolve_user(bundle.rootfs, "4242:77") == (4242, 77, [])
    assert resolve_user(bundle.rootfs, "") == (0, 0, [])
    with pytest.raises(InvalidArgument, match="unable to find user alice: no matching entries in passwd file"):
        resolve_user(bundle.rootfs, "alice")
    with pytest.raises(InvalidArgument, match="unable to find group wheel: no matching entries in group file"):
        resolve_user(bundle.rootfs, "bob:wheel")


def test_user_files_resolved_inside_rootfs(bundle: Bundle) -> None:
    # An absolute symlink pointing "outside" must land inside the rootfs, never on the host's /etc/passwd.
    (bundle.rootfs / "etc" / "passwd").unlink()
    (bundle.rootfs / "etc" / "real-passwd").write_text("carol:x:1234:1234::/:/bin/sh\n")
    (bundle.rootfs / "etc" / "passwd").symlink_to("/../../../../../etc/real-passwd")
    assert resolve_user(bundle.rootfs, "carol") == (1234, 1234, [])
    (bundle.rootfs / "etc" / "passwd").unlink()
    (bundle.rootfs / "etc" / "passwd").symlink_to("/../../../../../../etc/shadow")  # host file, not in rootfs
    with pytest.raises(InvalidArgument, match="unable to find user root"):
        resolve_user(bundle.rootfs, "root")
    (bundle.rootfs / "etc" / "passwd").unlink()
    os.mkfifo(bundle.rootfs / "etc" / "passwd")  # must not block
    assert resolve_user(bundle.rootfs, "7") == (7, 0, [])
    (bundle.rootfs / "etc" / "passwd").unlink()  # runc itself would block opening a FIFO /etc/passwd
    (bundle.rootfs / "etc" / "passwd").write_text(PASSWD)
    opts.with_user(bundle.spec, 7, 0, [])
    assert bundle.run("id -u").stdout.strip() == "7"


def test_hostname(bundle: Bundle) -> None:
    assert bundle.spec["hostname"] == bundle.container_id[:12]
    opts.with_hostname(bundle.spec, "web-1")
    assert bundle.run("hostname").stdout.strip() == "web-1"


def test_env_and_cwd(bundle: Bundle) -> None:
    opts.with_env(bundle.spec, ["FOO=bar", "PATH=/bin"])
    opts.with_cwd(bundle.spec, "/tmp")
    result = bundle.run('echo "$FOO|$PATH|$(pwd)"')
    assert result.stdout.strip() == "bar|/bin|/tmp"


def test_tmpfs_mount(bundle: Bundle) -> None:
    opts.with_tmpfs(bundle.spec, "/scratch", "size=1m,mode=700")
    result = bundle.run("echo hi > /scratch/f && cat /scratch/f && cat /proc/mounts")
    assert result.returncode == 0, result.stderr
    options = mount_options(result.stdout, "/scratch")
    assert {"nosuid", "nodev", "noexec", "size=1024k", "mode=700"} <= set(options)
    assert result.stdout.startswith("hi\n")


def test_bind_mount_readonly(bundle: Bundle) -> None:
    host_dir = bundle.workdir / "data"
    host_dir.mkdir()
    (host_dir / "hello.txt").write_text("from the host\n")
    opts.with_mounts(
        bundle.spec,
        [{"destination": "/data", "type": "bind", "source": str(host_dir), "options": ["rbind", "ro"]}],
    )
    result = bundle.run("cat /data/hello.txt; echo x > /data/new; echo write=$?")
    assert "from the host" in result.stdout and "write=1" in result.stdout
    assert "Read-only file system" in result.stderr
    assert not (host_dir / "new").exists()


def test_pids_limit(bundle: Bundle) -> None:
    opts.with_resources(bundle.spec, pids_limit=42)
    result = bundle.run("cat /sys/fs/cgroup/pids/pids.max")
    assert result.stdout.strip() == "42", result.stderr


def test_memory_limit(bundle: Bundle) -> None:
    opts.with_resources(bundle.spec, memory=64 * 1024 * 1024, memory_swap=128 * 1024 * 1024)
    result = bundle.run(
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
    )
    assert result.stdout.split() == [str(64 * 1024 * 1024), str(128 * 1024 * 1024)], result.stderr
    with pytest.raises(InvalidArgument, match="Minimum memory limit allowed is 6MB"):
        opts.with_resources(bundle.spec, memory=1024)


def test_cpu_limit(bundle: Bundle) -> None:
    opts.with_resources(bundle.spec, nano_cpus=500_000_000, cpu_shares=512)
    result = bundle.run(
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares"
    )
    assert result.stdout.split() == ["50000", "100000", "512"], result.stderr


def test_seccomp_default_blocks_namespace_and_mount_calls(bundle: Bundle) -> None:
    result = bundle.run(
        "grep Seccomp: /proc/self/status; echo ok; unshare -U true; echo unshare=$?; "
        "mount -t tmpfs none /mnt; echo mount=$?"
    )
    assert status_field(result.stdout, "Seccomp") == "2"
    assert "ok" in result.stdout
    assert "unshare=1" in result.stdout and "mount=1" in result.stdout
    assert "unshare: unshare(0x10000000): Operation not permitted" in result.stderr


def test_seccomp_unconfined_allows_user_namespaces(bundle: Bundle) -> None:
    # The same call the default profile refuses works without seccomp: it is seccomp, not a capability.
    opts.with_seccomp(bundle.spec, None)
    result = bundle.run("grep Seccomp: /proc/self/status; unshare -U true; echo unshare=$?")
    assert status_field(result.stdout, "Seccomp") == "0"
    assert "unshare=0" in result.stdout, result.stderr


def test_seccomp_follows_capabilities(bundle: Bundle) -> None:
    opts.with_capabilities(bundle.spec, add=["SYS_ADMIN"], drop=[])
    assert bundle.spec["linux"]["seccomp"] == default_profile([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"])
    result = bundle.run("unshare -U true; echo unshare=$?; mount -t tmpfs none /mnt; echo mount=$?")
    assert "unshare=0" in result.stdout and "mount=0" in result.stdout, result.stderr


def test_no_new_privileges(bundle: Bundle) -> None:
    assert status_field(bundle.run("cat /proc/self/status").stdout, "NoNewPrivs") == "0"
    opts.with_no_new_privileges(bundle.spec)
    assert status_field(bundle.run("cat /proc/self/status").stdout, "NoNewPrivs") == "1"


def test_rlimits(bundle: Bundle) -> None:
    opts.with_rlimits(bundle.spec, [{"Name": "nofile", "Soft": 1234, "Hard": 2345}])
    assert bundle.run("ulimit -n; ulimit -Hn").stdout.split() == ["1234", "2345"]
    with pytest.raises(InvalidArgument, match="invalid ulimit type: bogus"):
        opts.with_rlimits(bundle.spec, [{"Name": "bogus", "Soft": 1, "Hard": 1}])


def test_network_private(bundle: Bundle) -> None:
    opts.with_network_namespace(bundle.spec, "private")
    result = bundle.run("ip -o link; ip -o addr")
    links = [line.split(":")[1].strip() for line in result.stdout.splitlines() if ": <" in line]
    assert links == ["lo"], result.stdout
    assert "UP" in result.stdout.splitlines()[0] and "127.0.0.1/8" in result.stdout


def test_network_host(bundle: Bundle) -> None:
    opts.with_network_namespace(bundle.spec, "host")
    host_links = sorted(os.listdir("/sys/class/net"))
    result = bundle.run("ls /sys/class/net")
    assert sorted(result.stdout.split()) == host_links and len(host_links) > 1


def test_oom_score_adj(bundle: Bundle) -> None:
    opts.with_oom_score_adj(bundle.spec, 500)
    assert bundle.run("cat /proc/self/oom_score_adj").stdout.strip() == "500"


def test_sysctls(bundle: Bundle) -> None:
    opts.with_sysctls(bundle.spec, {"kernel.shmmni": "1234", "net.ipv4.ip_forward": "1"})
    assert bundle.run("cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ip_forward").stdout.split() == ["1234", "1"]
    opts.with_network_namespace(bundle.spec, "host")
    with pytest.raises(InvalidArgument, match="not allowed in host network namespace"):
        opts.with_sysctls(bundle.spec, {"net.ipv4.ip_forward": "1"})




def test_devices(bundle: Bundle) -> None:
    opts.with_devices(bundle.spec, [("/dev/null", "/dev/mynull", "rwm"), ("/dev/zero", "", "r")])
    result = bundle.run("ls -l /dev/mynull /dev/zero; echo ok > /dev/mynull && echo written; head -c 3 /dev/zero | wc -c")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("crw") and lines[0].split()[4:6] == ["1,", "3"] and lines[0].endswith("/dev/mynull")
    assert lines[1].endswith("/dev/zero") and lines[2:] == ["written", "3"]
    with pytest.raises(InvalidArgument, match='adding custom device "/dev/nope": no such file or directory'):
        opts.with_devices(bundle.spec, [("/dev/nope", "", "rwm")])
    with pytest.raises(InvalidArgument, match="not a device node"):
        opts.with_devices(bundle.spec, [("/etc/hostname", "", "rwm")])
    with pytest.raises(InvalidArgument, match="invalid device mode: rx"):
        opts.with_devices(bundle.spec, [("/dev/null", "", "rx")])
