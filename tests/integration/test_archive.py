"""docker cp both ways (GET/HEAD/PUT /containers/{id}/archive), scoped to the container's root."""

from __future__ import annotations

import io
import json
import tarfile
import urllib.parse
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon


def _run(daemon: Daemon, *args: str) -> str:
    return daemon.docker(*args, check=True).stdout


@pytest.fixture
def running(daemon: Daemon) -> object:
    _run(daemon, "run", "-d", "--name", "cpr", "busybox", "sleep", "600")
    yield "cpr"
    daemon.docker("rm", "-f", "cpr")


def test_cp_file_and_dir_both_ways(daemon: Daemon, running: str, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello in\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a").write_text("A")
    (tree / "top").write_text("T")
    _run(daemon, "cp", str(tmp_path / "hello.txt"), f"{running}:/tmp/")
    _run(daemon, "cp", str(tree), f"{running}:/tmp/tree")
    assert _run(daemon, "exec", running, "cat", "/tmp/hello.txt", "/tmp/tree/sub/a", "/tmp/tree/top") == \
        "hello in\nAT"
    _run(daemon, "exec", running, "sh", "-c", "mkdir -p /srv/d/e && echo out > /srv/d/e/f && echo x > /srv/one")
    out = tmp_path / "out"
    out.mkdir()
    _run(daemon, "cp", f"{running}:/srv/d", str(out))
    _run(daemon, "cp", f"{running}:/srv/one", str(out / "renamed"))
    assert (out / "d" / "e" / "f").read_text() == "out\n"
    assert (out / "renamed").read_text() == "x\n"
    proc = daemon.docker("cp", f"{running}:/nope", str(out))
    assert proc.returncode == 1 and "Could not find the file /nope in container cpr" in proc.stderr


def test_cp_into_stopped_container(daemon: Daemon, tmp_path: Path) -> None:
    _run(daemon, "create", "--name", "cps", "busybox", "cat", "/etc/motd-cp")
    try:
        (tmp_path / "motd-cp").write_text("copied while stopped\n")
        _run(daemon, "cp", str(tmp_path / "motd-cp"), "cps:/etc/motd-cp")
        _run(daemon, "cp", "cps:/etc/motd-cp", str(tmp_path / "back"))
        assert (tmp_path / "back").read_text() == "copied while stopped\n"
        _run(daemon, "start", "-a", "cps")
        assert _run(daemon, "logs", "cps") == "copied while stopped\n"
    finally:
        daemon.docker("rm", "-f", "cps")


def test_symlinks_stay_inside_the_container(daemon: Daemon, running: str, tmp_path: Path) -> None:
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    # inside the container: /link -> <host_dir> (absolute, also present in the container), /up -> ../../../..
    _run(daemon, "exec", running, "sh", "-c",
         f"mkdir -p {host_dir} && ln -s {host_dir} /link && ln -s ../../../../.. /up && ln -s / /root-link")
    (tmp_path / "payload").write_text("payload\n")
    _run(daemon, "cp", str(tmp_path / "payload"), f"{running}:/link/")
    _run(daemon, "cp", str(tmp_path / "payload"), f"{running}:/up{host_dir}/via-up")
    _run(daemon, "cp", str(tmp_path / "payload"), f"{running}:/root-link{host_dir}/via-root")
    assert list(host_dir.iterdir()) == []  # nothing reached the host
    assert _run(daemon, "exec", running, "ls", str(host_dir)).split() == ["payload", "via-root", "via-up"]
    # reading through a symlink resolves inside the container too, and stat reports the scoped target
    client = docker.DockerClient(base_url=daemon.host)
    try:
        _, st = client.api.get_archive(running, "/link")
        assert st["name"] == "link" and st["linkTarget"] == str(host_dir) and st["mode"] & (1 << 27)
        _run(daemon, "cp", "-L", f"{running}:/up{host_dir}/via-up", str(tmp_path / "got"))
        assert (tmp_path / "got").read_text() == "payload\n"
    finally:
        client.close()
    # the same holds for a stopped container's mounted rootfs
    _run(daemon, "stop", "-t", "0", running)
    _run(daemon, "cp", str(tmp_path / "payload"), f"{running}:/link/stopped")
    assert list(host_dir.iterdir()) == []


def test_put_archive_escape_is_refused(daemon: Daemon, running: str, tmp_path: Path) -> None:
    marker = tmp_path / "escaped"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("ok", b"fine"), ("../../../../../../.." + str(marker), b"evil")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    query = urllib.parse.urlencode({"path": "/tmp"})
    status, body = daemon.api("PUT", f"/containers/{running}/archive?{query}", buf.getvalue())
    assert status == 400, body
    assert "is outside of" in json.loads(body)["message"]
    assert not marker.exists()
    assert daemon.docker("exec", running, "test", "-e", "/tmp/ok").returncode == 1  # nothing written at all


def test_docker_py_put_and_get_archive(daemon: Daemon, running: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("dir/file.txt")
        info.size = 5
        info.mode = 0o640
        tf.addfile(info, io.BytesIO(b"12345"))
    client = docker.DockerClient(base_url=daemon.host)
    try:
        ctr = client.containers.get(running)
        ctr.exec_run(["mkdir", "/data-py"])
        assert ctr.put_archive("/data-py", buf.getvalue()) is True
        chunks, st = ctr.get_archive("/data-py/dir/file.txt")
        assert st["name"] == "file.txt" and st["size"] == 5 and st["mode"] == 0o640
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
            names = tf.getnames()
            data = tf.extractfile("file.txt")
            assert names == ["file.txt"] and data is not None and data.read() == b"12345"
        chunks, st = ctr.get_archive("/data-py")
        assert st["name"] == "data-py" and st["mode"] & (1 << 31)
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
            assert tf.getnames() == ["data-py", "data-py/dir", "data-py/dir/file.txt"]
        with pytest.raises(docker.errors.NotFound):
            ctr.put_archive("/no/such/dir", buf.getvalue())
    finally:
        client.close()


def test_diff_export_and_commit(daemon: Daemon, tmp_path: Path) -> None:
    _run(daemon, "run", "--name", "cpc", "busybox", "sh", "-c",
         "echo made > /made.txt && mkdir -p /tmp/newdir && echo x > /tmp/newdir/f && rm /bin/true && "
         "echo changed >> /etc/passwd")
    try:
        diff = _run(daemon, "diff", "cpc").splitlines()
        assert diff == ["C /bin", "D /bin/true", "C /etc", "C /etc/passwd", "A /made.txt", "C /tmp",
                        "A /tmp/newdir", "A /tmp/newdir/f"]
        export = tmp_path / "export.tar"
        _run(daemon, "export", "-o", str(export), "cpc")
        with tarfile.open(export) as tf:
            names = set(tf.getnames())
            made = tf.extractfile("made.txt")
            assert made is not None and made.read() == b"made\n"
        assert {"bin/sh", "etc/passwd", "tmp/newdir/f"} <= names and "bin/true" not in names
        image_id = _run(daemon, "commit", "-m", "my change", "-a", "me", "-c", "ENV COMMITTED=yes", "cpc",
                        "committed:v1").strip()
        assert image_id.startswith("sha256:")
        out = _run(daemon, "run", "--rm", "committed:v1", "sh", "-c",
                   "cat /made.txt /tmp/newdir/f; echo $COMMITTED; test -e /bin/true || echo gone")
        assert out == "made\nx\nyes\ngone\n"
        doc = json.loads(_run(daemon, "image", "inspect", "committed:v1"))[0]
        assert doc["Comment"] == "my change" and doc["Author"] == "me"
        history = daemon.json("GET", "/images/committed:v1/history")
        assert isinstance(history, list) and history[0]["Comment"] == "my change"
    finally:
        daemon.docker("rm", "-f", "cpc")
        daemon.docker("rmi", "committed:v1")


def test_cp_into_a_stopped_containers_volume(daemon: Daemon, tmp_path: Path) -> None:
    _run(daemon, "create", "--name", "cpv", "-v", "cpvol:/data", "busybox", "cat", "/data/in")
    try:
        (tmp_path / "in").write_text("into the volume\n")
        _run(daemon, "cp", str(tmp_path / "in"), "cpv:/data/in")
        assert (daemon.data_root / "volumes" / "cpvol" / "_data" / "in").read_text() == "into the volume\n"
        _run(daemon, "start", "-a", "cpv")
        assert _run(daemon, "logs", "cpv") == "into the volume\n"
    finally:
        daemon.docker("rm", "-f", "cpv")
        daemon.docker("volume", "rm", "cpvol")


def test_export_then_import_round_trip(daemon: Daemon) -> None:
    import tempfile
    from pathlib import Path

    work = Path(tempfile.mkdtemp(prefix="adk-export-", dir="/tmp"))
    try:
        daemon.docker("run", "--name", "exporter", "busybox", "sh", "-c", "echo kept > /marker; rm /bin/vi",
                      check=True)
        daemon.docker("export", "-o", str(work / "fs.tar"), "exporter", check=True)
        image_id = daemon.docker("import", "-c", 'CMD ["sh"]', str(work / "fs.tar"), "roundtrip:1",
                                 check=True).stdout.strip()
        assert image_id.startswith("sha256:")
        out = daemon.docker("run", "--rm", "roundtrip:1", "sh", "-c", "cat /marker; ls /bin/vi 2>&1 || true",
                            check=True).stdout
        assert out.startswith("kept\n") and "No such file" in out
    finally:
        daemon.docker("rm", "-f", "exporter")
        daemon.docker("rmi", "roundtrip:1")
        import shutil
        shutil.rmtree(work)
