"""POST /build, Docker's legacy builder, with the real docker CLI (DOCKER_BUILDKIT=0) and docker-py.

Every build runs real containers for its RUN steps and commits real layers; after each test no container is left.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon, tar_of

pytestmark = pytest.mark.root

DOCKERFILE = """\
# syntax and comments are ignored
ARG BASE=busybox
FROM ${BASE} AS base
ARG GREETING=hello
ENV APP_HOME=/app \\
    MODE="prod mode"
WORKDIR $APP_HOME
COPY hello.txt ./
COPY sub/ /app/sub/
ADD files.tar.gz /opt/
RUN echo "$GREETING from $MODE" > /app/built.txt && ls /opt
LABEL org.example.name="demo app" version=1
EXPOSE 8080/tcp 53/udp
USER 1000:1000
VOLUME /data
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --retries=2 CMD true
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/built.txt /app/hello.txt /app/sub/a.txt /opt/in.txt"]
"""


def make_context(root: Path, dockerfile: str = DOCKERFILE) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    (root / "hello.txt").write_text("hi from the context\n")
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "a.txt").write_text("a\n")
    (root / "files.tar.gz").write_bytes(gzip.compress(tar_of({"in.txt": b"unpacked by ADD\n"})))
    return root


def context_tar(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(root, "", recursive=True)
    return buf.getvalue()


def cli_build(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "build", *args], env=dict(daemon.env, DOCKER_BUILDKIT="0"),
                          capture_output=True, text=True, timeout=300)


def no_containers(daemon: Daemon) -> bool:
    return daemon.docker("ps", "-aq", check=True).stdout.strip() == ""


def test_cli_build_runs_every_instruction(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx")
    built = cli_build(daemon, "-t", "built:1", "-t", "built:extra", "--build-arg", "GREETING=howdy", str(context))
    assert built.returncode == 0, built.stdout + built.stderr
    out = built.stdout
    assert "Step 1/17 : ARG BASE=busybox" in out and "Step 17/17 : CMD" in out
    assert " ---> Running in " in out and "Removing intermediate container" in out
    assert "in.txt\n" in out  # the RUN's own output (ls /opt), streamed
    assert "Successfully built " in out and "Successfully tagged built:1" in out
    try:
        listed = daemon.docker("images", "-a", "--format", "{{.Repository}}:{{.Tag}}", check=True).stdout.split()
        assert sorted(listed) == ["built:1", "built:extra", "busybox:latest"]  # the steps' images are gone
        run = daemon.docker("run", "--rm", "built:1", check=True)
        assert run.stdout == "howdy from prod mode\nhi from the context\na\nunpacked by ADD\n"
        config = json.loads(daemon.docker("image", "inspect", "built:extra", check=True).stdout)[0]["Config"]
        assert config["Env"][-2:] == ["APP_HOME=/app", "MODE=prod mode"]
        assert (config["WorkingDir"], config["User"], config["StopSignal"]) == ("/app", "1000:1000", "SIGUSR1")
        assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}} and config["Volumes"] == {"/data": {}}
        assert config["Labels"] == {"org.example.name": "demo app", "version": "1"}
        assert config["Entrypoint"] == ["/bin/sh", "-c"]
        assert config["Cmd"] == ["cat /app/built.txt /app/hello.txt /app/sub/a.txt /opt/in.txt"]
        assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000, "Retries": 2}
        history = daemon.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "built:1", check=True)
        assert "/bin/sh -c #(nop)  WORKDIR /app" in history.stdout
        assert '/bin/sh -c echo "$GREETING from $MODE" > /app/built.txt && ls /opt' in history.stdout
        owner = daemon.docker("run", "--rm", "--entrypoint", "stat", "built:1", "-c", "%u:%g", "/app/hello.txt")
        assert owner.stdout == "0:0\n"  # COPY makes files root's, whatever they were in the context
        assert no_containers(daemon)
    finally:
        daemon.docker("rmi", "built:1", "built:extra")


def test_failed_run_step_reports_docker_error(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", f"FROM {busybox}\nRUN echo before; exit 3\nRUN echo never\n")
    built = cli_build(daemon, "--force-rm", "-t", "broken:1", str(context))
    assert built.returncode == 3  # the CLI exits with the errorDetail code: the RUN's status
    assert "The command '/bin/sh -c echo before; exit 3' returned a non-zero code: 3" in built.stderr
    assert "before" in built.stdout and "never" not in built.stdout
    assert no_containers(daemon)  # --force-rm: the failed step's container is gone too
    assert "broken" not in daemon.docker("images", check=True).stdout
    status, body = daemon.api("POST", "/build?dockerfile=Nope.dockerfile", context_tar(context))
    assert status == 200 and json.loads(body.splitlines()[-1])["errorDetail"]["message"] == \
        "Cannot locate specified Dockerfile: Nope.dockerfile"
    stdin = subprocess.run(["docker", "build", "-t", "fromstdin:1", "-"], input=f"FROM {busybox}\nRUN echo piped\n",
                           env=dict(daemon.env, DOCKER_BUILDKIT="0"), capture_output=True, text=True, timeout=120)
    assert stdin.returncode == 0 and "piped" in stdin.stdout, stdin.stderr  # the body is the Dockerfile itself
    daemon.docker("rmi", "fromstdin:1", check=True)
    outside = make_context(tmp_path / "ctx2", f"FROM {busybox}\nCOPY ../../etc/passwd /x\n")
    built = cli_build(daemon, str(outside))
    assert built.returncode == 1 and "forbidden path outside the build context: ../../etc/passwd" in built.stderr
    assert no_containers(daemon)


def test_multi_stage_copy_from_and_target(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    dockerfile = (f"FROM {busybox} AS builder\nRUN mkdir /out && echo compiled > /out/app\n"
                  f"FROM {busybox} AS tester\nRUN echo testing\n"
                  f"FROM {busybox}\nCOPY --from=builder /out/app /usr/local/bin/app\nCMD [\"cat\", \"/usr/local/bin/app\"]\n"
                  "FROM scratch AS bare\nCOPY --from=builder /out/ /\nCOPY --from=builder /bin/busybox /busybox\n"
                  "ENTRYPOINT [\"/busybox\", \"cat\"]\nCMD [\"/app\"]\n")
    context = make_context(tmp_path / "ctx", dockerfile)
    built = cli_build(daemon, "-t", "staged:1", str(context))
    assert built.returncode == 0, built.stdout + built.stderr
    final = cli_build(daemon, "--target", "bare", "-t", "staged:bare", str(context))
    assert final.returncode == 0, final.stdout + final.stderr
    targeted = cli_build(daemon, "--target", "builder", "-t", "staged:builder", str(context))
    assert targeted.returncode == 0 and "testing" not in targeted.stdout, targeted.stdout
    try:
        assert daemon.docker("run", "--rm", "staged:1", check=True).stdout == "compiled\n"
        assert daemon.docker("run", "--rm", "staged:bare", check=True).stdout == "compiled\n"  # FROM scratch
        listing = daemon.docker("run", "--rm", "--entrypoint", "/busybox", "staged:bare", "ls", "/", check=True)
        assert set(listing.stdout.split()) <= {"app", "busybox", "dev", "etc", "proc", "sys"}, listing.stdout
        assert daemon.docker("run", "--rm", "staged:builder", "cat", "/out/app", check=True).stdout == "compiled\n"
        missing = cli_build(daemon, "--target", "nope", str(context))
        assert missing.returncode == 1 and "failed to reach build target nope" in missing.stderr
        assert no_containers(daemon)
    finally:
        daemon.docker("rmi", "staged:1", "staged:builder", "staged:bare")


def test_docker_py_build_with_args_and_labels(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", f"FROM {busybox}\nARG WHO\nVOLUME /scratch\nRUN echo built-by-$WHO > /who\n")
    client = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=120)
    try:
        image, logs = client.images.build(path=str(context), tag="pybuilt:1", buildargs={"WHO": "docker-py"},
                                          labels={"via": "docker-py"}, rm=True)
        lines = "".join(entry.get("stream", "") for entry in logs)
        assert "Successfully built" in lines and image.labels == {"via": "docker-py"}
        assert daemon.docker("volume", "ls", "-q", check=True).stdout == ""  # the RUN step's anonymous volume went
        assert client.containers.run("pybuilt:1", ["cat", "/who"], remove=True) == b"built-by-docker-py\n"
        client.volumes.prune()  # docker-py's remove=True keeps anonymous volumes, as with Docker
        with pytest.raises(docker.errors.BuildError, match="returned a non-zero code: 1"):
            client.images.build(fileobj=io.BytesIO(f"FROM {busybox}\nRUN false\n".encode()), rm=True,
                                forcerm=True)
    finally:
        client.images.remove("pybuilt:1")
        client.close()
    assert no_containers(daemon)


def test_hostile_context_is_refused_and_writes_nothing_outside(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    context = tar_of({"Dockerfile": f"FROM {busybox}\n".encode(), f"../../../../..{victim}": b"owned"})
    status, body = daemon.api("POST", "/build?t=hostile:1", context)
    messages = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    assert status == 200 and "errorDetail" in messages[-1], messages
    assert not os.path.exists(victim)
    for query, message in (("t=Bad:Tag", "invalid reference format"), ("buildargs=[1", "invalid buildargs"),
                           ("remote=https://example.com/x.git", "remote build contexts are not supported")):
        status, body = daemon.api("POST", f"/build?{query}", context)
        assert status == 400 and message in json.loads(body)["message"], (query, body)
    assert "hostile" not in daemon.docker("images", check=True).stdout
