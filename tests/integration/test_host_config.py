"""HostConfig options take effect inside real containers (docker CLI -> Engine API -> OCI spec -> runc)."""

from __future__ import annotations

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


def run(d: Daemon, *args: str) -> tuple[int, str, str]:
    proc = d.docker("run", "--rm", *args)
    return proc.returncode, proc.stdout, proc.stderr


def test_limits_reach_the_cgroup(daemon: Daemon, busybox: str) -> None:
    code, out, err = run(daemon, "--memory", "32m", "--pids-limit", "50", "--cpus", "0.5", busybox, "sh", "-c",
                         "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
                         "/sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/memory.max "
                         "/sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max")
    assert code == 0, err
    values = out.split()
    assert values[0] == str(32 * 1024 * 1024) and values[1] == "50" and values[2] in ("50000", "50000 100000")


def test_read_only_rootfs_and_tmpfs_mount(daemon: Daemon, busybox: str) -> None:
    code, out, err = run(daemon, "--read-only", "--mount", "type=tmpfs,destination=/scratch", busybox, "sh", "-c",
                         "touch /x 2>/dev/null || echo ro; touch /scratch/ok && echo tmpfs-ok")
    assert (code, out) == (0, "ro\ntmpfs-ok\n"), err


def test_capabilities_drop_add_and_privileged(daemon: Daemon, busybox: str) -> None:
    def cap_eff(*flags: str) -> int:
        code, out, err = run(daemon, *flags, busybox, "sh", "-c", "grep CapEff /proc/self/status")
        assert code == 0, err
        return int(out.split()[1], 16)

    default = cap_eff()
    assert default == 0xa80425fb  # Docker's 14 default capabilities
    assert cap_eff("--cap-drop", "CHOWN") == default & ~1
    assert cap_eff("--cap-add", "NET_ADMIN") == default | (1 << 12)
    assert cap_eff("--privileged") > default
    code, out, _ = run(daemon, "--cap-drop", "CHOWN", busybox, "sh", "-c", "chown nobody /tmp && echo owned || echo denied")
    assert out == "denied\n"


def test_no_new_privileges_and_seccomp(daemon: Daemon, busybox: str) -> None:
    code, out, _ = run(daemon, "--security-opt", "no-new-privileges", busybox, "grep", "NoNewPrivs", "/proc/self/status")
    assert out.split() == ["NoNewPrivs:", "1"]
    code, out, _ = run(daemon, busybox, "sh", "-c", "mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo refused")
    assert out == "refused\n"


def test_network_modes(daemon: Daemon, busybox: str) -> None:
    code, out, err = run(daemon, "--network", "none", busybox, "ls", "/sys/class/net")
    assert (code, out.split()) == (0, ["lo"]), err
    code, out, err = run(daemon, busybox, "ls", "/sys/class/net")
    assert out.split() == ["eth0", "lo"]  # the default bridge network
    code, out, err = run(daemon, "--network", "host", busybox, "ls", "/sys/class/net")
    assert len(out.split()) > 1 and "lo" in out.split()


def test_hostname_hosts_resolv_and_env(daemon: Daemon, busybox: str) -> None:
    code, out, err = run(daemon, "--hostname", "box1", "-e", "FOO=bar", busybox, "sh", "-c",
                         "hostname; cat /etc/hostname; grep -c localhost /etc/hosts; echo $FOO; "
                         "test -s /etc/resolv.conf && echo resolv; grep box1 /etc/hosts; ip -4 -o addr show eth0")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "box1" and lines[1] == "box1" and int(lines[2]) >= 1 and lines[3] == "bar"
    assert lines[4] == "resolv"
    own_ip = lines[6].split(" inet ")[1].split("/")[0]
    assert lines[5] == f"{own_ip}\tbox1"  # the container's own address, as Docker writes it


def test_env_without_a_value_unsets_the_variable(daemon: Daemon, busybox: str) -> None:
    """`-e NAME` with NAME unset on the client reaches the daemon as a bare name: Docker's ReplaceOrAppendEnvValues
    drops the variable (here the HOSTNAME the daemon sets, and one nobody set) instead of failing the start; exec's
    -e does the same."""
    code, out, err = run(daemon, "-e", "AIODOCK_UNSET_VAR", "-e", "HOSTNAME", "-e", "KEPT=1", busybox, "env")
    assert code == 0, err
    names = [line.split("=", 1)[0] for line in out.splitlines()]
    assert "KEPT" in names and "PATH" in names
    assert "AIODOCK_UNSET_VAR" not in names and "HOSTNAME" not in names
    daemon.docker("run", "-d", "--name", "envexec", busybox, "sleep", "30", check=True)
    try:
        out = daemon.docker("exec", "-e", "HOSTNAME", "-e", "E=2", "envexec", "env", check=True).stdout
        names = [line.split("=", 1)[0] for line in out.splitlines()]
        assert "E" in names and "HOSTNAME" not in names
    finally:
        daemon.docker("rm", "-f", "envexec")


def test_log_config_is_stored_with_the_default_driver(daemon: Daemon, busybox: str) -> None:
    """As Docker's create does: an empty LogConfig.Type becomes the daemon's default driver (json-file)."""
    status, body = daemon.api("POST", "/containers/create?name=logcfg",
                              {"Image": busybox, "Cmd": ["true"], "HostConfig": {"LogConfig": {"Type": "",
                                                                                                "Config": {}}}})
    assert status == 201, body
    try:
        assert daemon.docker("inspect", "-f", "{{json .HostConfig.LogConfig}}", "logcfg").stdout.strip() == \
            '{"Type":"json-file","Config":{}}'
    finally:
        daemon.docker("rm", "-f", "logcfg")


def test_stop_signal_and_timeout_from_config(daemon: Daemon, busybox: str) -> None:
    daemon.docker("run", "-d", "--name", "usr2stop", "--stop-signal", "USR2", "--stop-timeout", "3", busybox, "sh",
                  "-c", "trap 'exit 12' USR2; while true; do sleep 0.1; done", check=True)
    import time
    time.sleep(0.3)
    daemon.docker("stop", "usr2stop", check=True)
    assert daemon.docker("inspect", "-f", "{{.State.ExitCode}}", "usr2stop").stdout.strip() == "12"
    daemon.docker("rm", "usr2stop", check=True)


def test_tty_sets_term_like_docker(daemon: Daemon, busybox: str) -> None:
    code, out, err = run(daemon, "-t", busybox, "sh", "-c", "echo $TERM; test -t 1 && echo tty")
    assert code == 0, err
    assert out.replace("\r", "").split() == ["xterm", "tty"]


def test_sysctls_oom_score_adj_and_devices(daemon: Daemon, busybox: str) -> None:
    code, out, err = run(daemon, "--sysctl", "net.ipv4.tcp_keepalive_time=77", "--sysctl", "kernel.shmmni=1234",
                         "--oom-score-adj", "123", "--device", "/dev/null:/dev/mynull:rw", busybox, "sh", "-c",
                         "cat /proc/sys/net/ipv4/tcp_keepalive_time /proc/sys/kernel/shmmni /proc/1/oom_score_adj; "
                         "echo x > /dev/mynull && echo device-ok")
    assert (code, out.split()) == (0, ["77", "1234", "123", "device-ok"]), err
    with open("/proc/sys/net/ipv4/tcp_keepalive_time") as host:
        assert host.read().strip() != "77"  # the container's own netns took it
    code, _, err = run(daemon, "--network", "host", "--sysctl", "net.ipv4.ip_forward=0", busybox, "true")
    assert code != 0 and 'sysctl "net.ipv4.ip_forward" not allowed in host network namespace' in err
    code, _, err = run(daemon, "--device", "/dev/nope", busybox, "true")
    assert code != 0 and 'adding custom device "/dev/nope": no such file or directory' in err


def test_pid_uts_and_ipc_namespace_modes(daemon: Daemon, busybox: str) -> None:
    import os
    import socket

    donor = daemon.docker("run", "-d", "--ipc", "shareable", busybox, "sh", "-c",
                          "echo from-donor > /dev/shm/mark; exec sleep 300", check=True).stdout.strip()
    private = daemon.docker("run", "-d", busybox, "sleep", "300", check=True).stdout.strip()
    try:
        # --pid host sees the host's processes; --pid container:<id> sees the other container's.
        code, out, err = run(daemon, "--pid", "host", busybox, "sh", "-c", f"test -d /proc/{os.getpid()} && echo host")
        assert (code, out) == (0, "host\n"), err
        code, out, err = run(daemon, "--pid", f"container:{donor}", busybox, "ps", "-o", "pid,args")
        assert code == 0 and any(line.split()[:2] == ["1", "sleep"] for line in out.splitlines()), out + err
        # --uts host: the host's name, in /etc/hostname too; with --hostname it conflicts, as Docker says.
        code, out, err = run(daemon, "--uts", "host", busybox, "sh", "-c", "hostname; cat /etc/hostname")
        assert (code, out.split()) == (0, [socket.gethostname()] * 2), err
        code, _, err = run(daemon, "--uts", "host", "--hostname", "x", busybox, "true")
        assert code != 0 and "conflicting options: hostname and the UTS mode" in err
        # --ipc: the host's namespace, a shareable donor's namespace and /dev/shm, none, and the errors.
        host_ipc = os.readlink("/proc/self/ns/ipc")
        code, out, err = run(daemon, "--ipc", "host", busybox, "readlink", "/proc/self/ns/ipc")
        assert (code, out.strip()) == (0, host_ipc), err
        donor_ipc = daemon.docker("exec", donor, "readlink", "/proc/self/ns/ipc", check=True).stdout.strip()
        code, out, err = run(daemon, "--ipc", f"container:{donor}", busybox, "sh", "-c",
                             "readlink /proc/self/ns/ipc; cat /dev/shm/mark; echo from-joiner > /dev/shm/back")
        assert (code, out.split()) == (0, [donor_ipc, "from-donor"]), err
        assert daemon.docker("exec", donor, "cat", "/dev/shm/back", check=True).stdout == "from-joiner\n"
        code, _, err = run(daemon, "--ipc", f"container:{private}", busybox, "true")
        assert code != 0 and "non-shareable IPC" in err
        code, out, err = run(daemon, "--ipc", "none", busybox, "sh", "-c", "test -e /dev/shm || echo no-shm")
        assert (code, out) == (0, "no-shm\n"), err
        code, _, err = run(daemon, "--ipc", "container:nope", busybox, "true")
        assert code != 0 and "No such container: nope" in err
        status, body = daemon.api("POST", "/containers/create", {
            "Image": busybox, "HostConfig": {"PidMode": "bogus", "IpcMode": ""}})
        assert status == 400 and b"invalid PID mode: bogus" in body
    finally:
        daemon.docker("rm", "-f", donor, private)
    shm = daemon.data_root / "containers" / donor / "mounts" / "shm"
    assert not os.path.ismount(shm)  # the donor's host-side /dev/shm went with it


def test_runtime_must_be_the_daemons(daemon: Daemon, busybox: str) -> None:
    assert run(daemon, "--runtime", "runc", busybox, "true")[0] == 0
    code, _, err = run(daemon, "--runtime", "nope", busybox, "true")
    assert code != 0 and "unknown or invalid runtime name: nope" in err


def test_memory_swappiness_oom_kill_disable_and_device_cgroup_rules(daemon: Daemon, busybox: str) -> None:
    import os

    if not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("cgroup v1 memory knobs (discarded on v2, as Docker does)")
    code, out, err = run(daemon, "--memory", "64m", "--memory-swappiness", "7", "--oom-kill-disable",
                         "--device-cgroup-rule", "c 42:* rm", busybox, "sh", "-c",
                         "cat /sys/fs/cgroup/memory/memory.swappiness; grep oom_kill_disable "
                         "/sys/fs/cgroup/memory/memory.oom_control; grep '^c 42' /sys/fs/cgroup/devices/devices.list")
    assert (code, out.splitlines()) == (0, ["7", "oom_kill_disable 1", "c 42:* rm"]), err
    for host_config, message in (({"DeviceCgroupRules": ["x 1:2 rwm"]}, b"invalid device cgroup rule format"),
                                 ({"MemorySwappiness": 101}, b"valid memory swappiness range is 0-100")):
        status, body = daemon.api("POST", "/containers/create", {"Image": busybox, "HostConfig": host_config})
        assert status == 400 and message in body, body


def test_options_this_host_cannot_honour_fail_or_warn_as_docker(daemon: Daemon, busybox: str) -> None:
    import json
    import os

    code, _, err = run(daemon, "--gpus", "all", busybox, "true")  # no device driver is registered
    assert code != 0 and 'could not select device driver "" with capabilities: [[gpu]]' in err
    code, _, err = run(daemon, "--storage-opt", "size=1G", busybox, "true")
    assert code != 0 and "--storage-opt is supported only for overlay over xfs" in err
    status, body = daemon.api("POST", "/containers/create", {"Image": busybox, "HostConfig": {"BlkioWeight": 300}})
    assert status == 201
    created = json.loads(body)
    try:
        if os.path.exists("/sys/fs/cgroup/blkio/blkio.weight"):
            assert created["Warnings"] in (None, [])
        else:  # as Docker on a host without the knob: discarded, with its warning
            assert created["Warnings"] == [
                "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."]
            info = json.loads(daemon.docker("inspect", created["Id"], check=True).stdout)[0]
            assert info["HostConfig"]["BlkioWeight"] == 0
    finally:
        daemon.docker("rm", "-f", created["Id"])
