"""docker update (POST /containers/{id}/update): live cgroup limits through the shim's `runc update`, persisted
HostConfig, restart policies, and Docker's errors; real docker CLI and docker-py against a real aiodock daemon."""

from __future__ import annotations

import json
from typing import Any

import docker
import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root

MIB = 1024 * 1024
CG = "/sys/fs/cgroup"


def _cat(daemon: Daemon, name: str, *paths: str) -> list[str]:
    proc = daemon.docker("exec", name, "cat", *paths, check=True)
    return proc.stdout.split()


def _host_config(daemon: Daemon, name: str) -> dict[str, Any]:
    hc: dict[str, Any] = json.loads(daemon.docker("inspect", name, check=True).stdout)[0]["HostConfig"]
    return hc


def test_update_running_container_applies_live(daemon: Daemon, busybox: str) -> None:
    cid = daemon.docker("run", "-d", "--name", "upd-live", "--memory", "32m", busybox, "sleep", "300",
                        check=True).stdout.strip()
    try:
        assert _cat(daemon, "upd-live", f"{CG}/memory/memory.limit_in_bytes") == [str(32 * MIB)]
        proc = daemon.docker("update", "--memory", "64m", "--memory-swap", "128m", "upd-live", check=True)
        assert proc.stdout.strip() == "upd-live"
        assert _cat(daemon, "upd-live", f"{CG}/memory/memory.limit_in_bytes",
                    f"{CG}/memory/memory.memsw.limit_in_bytes") == [str(64 * MIB), str(128 * MIB)]

        daemon.docker("update", "--cpus", "0.5", "upd-live", check=True)
        assert _cat(daemon, "upd-live", f"{CG}/cpu/cpu.cfs_quota_us", f"{CG}/cpu/cpu.cfs_period_us") == \
            ["50000", "100000"]
        daemon.docker("update", "--pids-limit", "20", "--cpu-shares", "512", "--cpuset-cpus", "0", "upd-live",
                      check=True)
        assert _cat(daemon, "upd-live", f"{CG}/pids/pids.max", f"{CG}/cpu/cpu.shares",
                    f"{CG}/cpuset/cpuset.cpus") == ["20", "512", "0"]
        assert _cat(daemon, "upd-live", f"{CG}/memory/memory.limit_in_bytes") == [str(64 * MIB)]  # untouched

        daemon.docker("update", "--restart", "always", "upd-live", check=True)
        hc = _host_config(daemon, "upd-live")
        assert hc["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
        assert (hc["Memory"], hc["MemorySwap"], hc["NanoCpus"], hc["PidsLimit"], hc["CpuShares"],
                hc["CpusetCpus"]) == (64 * MIB, 128 * MIB, 500_000_000, 20, 512, "0")

        # a paused container is updated too (the cgroup files are written, the freezer stays)
        daemon.docker("pause", "upd-live", check=True)
        daemon.docker("update", "--pids-limit", "30", "upd-live", check=True)
        daemon.docker("unpause", "upd-live", check=True)
        assert _cat(daemon, "upd-live", f"{CG}/pids/pids.max") == ["30"]

        # the persisted HostConfig is what the next start uses
        daemon.docker("stop", "-t", "0", "upd-live", check=True)
        daemon.docker("start", "upd-live", check=True)
        assert _cat(daemon, "upd-live", f"{CG}/memory/memory.limit_in_bytes", f"{CG}/pids/pids.max",
                    f"{CG}/cpu/cpu.cfs_quota_us") == [str(64 * MIB), "30", "50000"]
    finally:
        daemon.docker("rm", "-f", cid)


def test_update_stopped_container_persists_and_applies_at_start(daemon: Daemon, busybox: str) -> None:
    cid = daemon.docker("create", "--name", "upd-stopped", "--memory", "32m", busybox, "sleep", "300",
                        check=True).stdout.strip()
    try:
        daemon.docker("update", "--memory", "48m", "--pids-limit", "25", "--restart", "on-failure:3",
                      "upd-stopped", check=True)
        hc = _host_config(daemon, "upd-stopped")
        assert (hc["Memory"], hc["PidsLimit"]) == (48 * MIB, 25)
        assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        daemon.docker("start", "upd-stopped", check=True)
        assert _cat(daemon, "upd-stopped", f"{CG}/memory/memory.limit_in_bytes", f"{CG}/pids/pids.max") == \
            [str(48 * MIB), "25"]
    finally:
        daemon.docker("rm", "-f", cid)


def test_update_errors(daemon: Daemon, busybox: str) -> None:
    status, data = daemon.api("POST", "/containers/nope-nope/update", {"Memory": 64 * MIB})
    assert status == 404 and json.loads(data)["message"] == "No such container: nope-nope"
    proc = daemon.docker("update", "--memory", "64m", "nope-nope")
    assert proc.returncode != 0 and "No such container: nope-nope" in proc.stderr

    cid = daemon.docker("run", "-d", "--name", "upd-bad", "--cpus", "0.5", busybox, "sleep", "300",
                        check=True).stdout.strip()
    auto = daemon.docker("run", "-d", "--rm", "--name", "upd-auto", busybox, "sleep", "300",
                         check=True).stdout.strip()
    try:
        for body, message in [
            ({"Memory": 1024}, "Minimum memory limit allowed is 6MB"),
            ({"Memory": 64 * MIB, "MemorySwap": 32 * MIB},
             "Minimum memoryswap limit should be larger than memory limit, see usage"),
            ({"MemoryReservation": 1024}, "Minimum memory reservation allowed is 6MB"),
            ({"NanoCpus": 500_000_000, "CpuPeriod": 100_000},
             "Conflicting options: Nano CPUs and CPU Period cannot both be set"),
            ({"CpuPeriod": 10}, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"),
            ({"CpuQuota": 10}, "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
            ({"CpusetCpus": "x"}, "Invalid value x for cpuset cpus"),
            ({"Memory": "64m"}, "json: cannot unmarshal string into Go struct field UpdateConfig.Memory of type int64"),
            ({"RestartPolicy": {"Name": "sometimes"}},
             "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or "
             "'unless-stopped'"),
            ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}},
             "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
        ]:
            status, data = daemon.api("POST", f"/containers/{cid}/update", body)
            assert (status, json.loads(data)["message"]) == (400, message), body
        status, data = daemon.api("POST", f"/containers/{cid}/update", b"[]")
        assert status == 400
        proc = daemon.docker("update", "--memory", "1k", "upd-bad")
        assert proc.returncode != 0 and "Minimum memory limit allowed is 6MB" in proc.stderr

        # NanoCpus already set: CpuQuota / CpuPeriod cannot be updated (409, as Docker)
        proc = daemon.docker("update", "--cpu-quota", "20000", "upd-bad")
        assert proc.returncode != 0
        assert f"Cannot update container {cid}: Conflicting options: CPU Quota cannot be updated as NanoCPUs " \
               "has already been set" in proc.stderr
        status, data = daemon.api("POST", f"/containers/{auto}/update", {"RestartPolicy": {"Name": "always"}})
        assert status == 409
        assert json.loads(data)["message"] == f"Cannot update container {auto}: Restart policy cannot be updated " \
                                              "because AutoRemove is enabled for the container"
        # nothing of the refused updates was kept or applied
        hc = _host_config(daemon, "upd-bad")
        assert (hc["Memory"], hc["CpuQuota"], hc["NanoCpus"], hc["MemoryReservation"]) == (0, 0, 500_000_000, 0)
        assert _cat(daemon, "upd-bad", f"{CG}/cpu/cpu.cfs_quota_us") == ["50000"]
        assert _host_config(daemon, "upd-auto")["RestartPolicy"]["Name"] == "no"
    finally:
        daemon.docker("rm", "-f", cid, auto)


def test_update_with_docker_py(daemon: Daemon, busybox: str) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.44", timeout=60)
    container = client.containers.run(busybox, ["sleep", "300"], detach=True, name="upd-py", mem_limit="32m")
    try:
        result = container.update(mem_limit="96m", memswap_limit="192m", cpu_quota=25000, cpu_period=100000,
                                  cpu_shares=256)
        assert result == {"Warnings": []}
        assert _cat(daemon, "upd-py", f"{CG}/memory/memory.limit_in_bytes", f"{CG}/cpu/cpu.cfs_quota_us",
                    f"{CG}/cpu/cpu.shares") == [str(96 * MIB), "25000", "256"]
        container.reload()
        hc = container.attrs["HostConfig"]
        assert (hc["Memory"], hc["MemorySwap"], hc["CpuQuota"], hc["CpuPeriod"], hc["CpuShares"]) == \
            (96 * MIB, 192 * MIB, 25000, 100000, 256)
        with pytest.raises(docker.errors.APIError) as info:
            container.update(mem_limit="1k")
        assert info.value.status_code == 400 and "Minimum memory limit allowed is 6MB" in str(info.value)
        with pytest.raises(docker.errors.NotFound):
            client.api.update_container("nope-nope", mem_limit="64m")
    finally:
        container.remove(force=True)
        client.close()
