"""Container stats from the cgroup and the network namespace: docker stats and docker-py."""

from __future__ import annotations

import json

import docker
import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


def test_docker_stats_no_stream_shows_the_limit_and_usage(daemon: Daemon, busybox: str) -> None:
    daemon.docker("run", "-d", "--name", "statbox", "--memory", "64m", "--pids-limit", "40", busybox, "sh", "-c",
                  "while true; do echo x > /dev/null; done", check=True)
    try:
        out = daemon.docker("stats", "--no-stream", "--format", "{{json .}}", "statbox", check=True).stdout
        row = json.loads(out)
        assert row["Name"] == "statbox"
        used, limit = (part.strip() for part in row["MemUsage"].split("/"))
        assert limit == "64MiB" and used != "0B"
        assert float(row["CPUPerc"].rstrip("%")) > 5.0  # a busy loop: the precpu reading gives a real CPU %
        assert int(row["PIDs"]) >= 1

        status, body = daemon.api("GET", "/containers/statbox/stats?stream=0")
        doc = json.loads(body)
        assert status == 200 and doc["id"].startswith(daemon.docker("inspect", "-f", "{{.Id}}", "statbox").stdout[:12])
        assert doc["memory_stats"]["limit"] == 64 * 1024 * 1024 and doc["pids_stats"]["limit"] == 40
        assert doc["cpu_stats"]["cpu_usage"]["total_usage"] > doc["precpu_stats"]["cpu_usage"]["total_usage"] > 0
        assert doc["cpu_stats"]["system_cpu_usage"] > 0 and doc["cpu_stats"]["online_cpus"] >= 1
        assert "eth0" in doc["networks"] and doc["networks"]["eth0"]["rx_bytes"] >= 0

        status, body = daemon.api("GET", "/containers/statbox/stats?stream=0&one-shot=1")
        assert status == 200 and json.loads(body)["preread"] == "0001-01-01T00:00:00Z"
    finally:
        daemon.docker("rm", "-f", "statbox")


def test_docker_py_stats_stream_and_stopped_container(daemon: Daemon, busybox: str) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.44", timeout=30)
    try:
        c = client.containers.run(busybox, ["sleep", "30"], detach=True, name="pystats")
        stream = c.stats(decode=True, stream=True)
        first, second = next(stream), next(stream)
        with open("/proc/meminfo") as meminfo:  # no memory limit: the host's memory, as Docker reports it
            host = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemTotal:"))
        assert first["memory_stats"]["limit"] == host
        assert second["precpu_stats"]["cpu_usage"]["total_usage"] == first["cpu_stats"]["cpu_usage"]["total_usage"]
        assert first["memory_stats"]["usage"] > 0
        c.stop(timeout=0)
        stopped = c.stats(stream=False)
        assert stopped["read"] == "0001-01-01T00:00:00Z" and stopped["memory_stats"] == {}
        c.remove()
        status, body = daemon.api("GET", "/containers/nosuch/stats?stream=0")
        assert status == 404 and json.loads(body)["message"] == "No such container: nosuch"
    finally:
        client.close()
