"""docker-compose 1.29 (Debian's package) against a real aiodock daemon."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = [pytest.mark.root, pytest.mark.skipif(shutil.which("docker-compose") is None,
                                                   reason="docker-compose is installed by .ci/run")]

COMPOSE = """\
version: "3.8"
services:
  web:
    image: busybox:latest
    command: sh -c "trap 'exit 0' TERM; echo web up; while true; do sleep 0.1; done"
    network_mode: host
    stop_grace_period: 2s
    labels:
      tier: front
  job:
    image: busybox:latest
    command: sh -c "echo job done $$GREETING"
    network_mode: none
    environment:
      GREETING: hello
"""


def compose(d: Daemon, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker-compose", "--no-ansi", *args], cwd=project, env=d.env, capture_output=True,
                          text=True, timeout=120)


def test_compose_up_ps_logs_second_up_and_down(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "docker-compose.yml").write_text(COMPOSE)
    up = compose(daemon, project, "up", "-d")
    assert up.returncode == 0, up.stderr
    ps = compose(daemon, project, "ps")
    assert "shop_web_1" in ps.stdout and "Up" in ps.stdout and "shop_job_1" in ps.stdout
    logs = compose(daemon, project, "logs")
    assert "job done hello" in logs.stdout and "web up" in logs.stdout
    labels = daemon.docker("inspect", "-f", "{{index .Config.Labels \"com.docker.compose.service\"}}", "shop_web_1")
    assert labels.stdout.strip() == "web"
    again = compose(daemon, project, "up", "-d")  # reads the image's ContainerConfig to decide what changed
    assert again.returncode == 0, again.stderr
    assert "shop_web_1 is up-to-date" in again.stderr
    down = compose(daemon, project, "down")
    assert down.returncode == 0, down.stderr
    assert daemon.docker("ps", "-aq", "--filter", "label=com.docker.compose.project=shop").stdout.strip() == ""


NETWORKED = """\
version: "3.8"
services:
  web:
    image: busybox:latest
    command: httpd -f -p 80 -h /etc
    networks:
      default:
        aliases: [www]
  cli:
    image: busybox:latest
    command: sleep 600
"""


def test_compose_services_reach_each_other_by_service_name(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    project = tmp_path / "dnsproj"
    project.mkdir()
    (project / "docker-compose.yml").write_text(NETWORKED)
    up = compose(daemon, project, "up", "-d")
    try:
        assert up.returncode == 0, up.stderr
        web = daemon.docker("inspect", "-f", "{{.Id}}", "dnsproj_web_1", check=True).stdout.strip()
        aliases = daemon.docker("inspect", "-f", "{{json .NetworkSettings.Networks.dnsproj_default.Aliases}}",
                                "dnsproj_web_1", check=True).stdout
        assert {"web", "www", web[:12]} <= set(json.loads(aliases))
        got = daemon.docker("exec", "dnsproj_cli_1", "sh", "-c", "wget -q -O- http://web/hostname && nslookup www")
        assert got.returncode == 0 and got.stdout.startswith(web[:12]), got.stdout + got.stderr
        back = daemon.docker("exec", "dnsproj_web_1", "ping", "-c1", "-W5", "cli")
        assert back.returncode == 0 and "1 packets received" in back.stdout, back.stdout + back.stderr
    finally:
        down = compose(daemon, project, "down", "-t", "1")
    assert down.returncode == 0, down.stderr
    assert "dnsproj_default" not in daemon.docker("network", "ls", check=True).stdout


BUILT = """\
version: "3.8"
services:
  app:
    build:
      context: ./app
      args:
        FLAVOUR: compose
    image: composebuilt:1
    network_mode: none
    ipc: shareable
    pid: host
"""


def test_compose_build_and_run_a_built_service(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    project = tmp_path / "built"
    (project / "app").mkdir(parents=True)
    (project / "app" / "Dockerfile").write_text(
        f"FROM {busybox}\nARG FLAVOUR\nRUN echo made-by-$FLAVOUR > /made\nCMD [\"cat\", \"/made\"]\n")
    (project / "docker-compose.yml").write_text(BUILT)
    try:
        built = compose(daemon, project, "build")
        assert built.returncode == 0, built.stdout + built.stderr
        assert "Successfully tagged composebuilt:1" in built.stdout + built.stderr
        up = compose(daemon, project, "up", "--no-build")
        assert up.returncode == 0 and "made-by-compose" in up.stdout, up.stdout + up.stderr
    finally:
        compose(daemon, project, "down", "--rmi", "all")
    assert "composebuilt" not in daemon.docker("images", check=True).stdout
