"""Logs options, json-file rotation, and hostile image archives refused with nothing written outside."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


def test_logs_tail_streams_timestamps_and_follow(daemon: Daemon, busybox: str) -> None:
    daemon.docker("run", "--name", "talker", busybox, "sh", "-c",
                  "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done", check=True)
    logs = daemon.docker("logs", "talker")
    assert logs.stdout == "".join(f"out{i}\n" for i in range(1, 6))
    assert logs.stderr == "".join(f"err{i}\n" for i in range(1, 6))
    tail = daemon.docker("logs", "--tail", "2", "talker")  # Docker counts the tail over both streams
    assert len((tail.stdout + tail.stderr).splitlines()) == 2
    only_err = daemon.api("GET", "/containers/talker/logs?stderr=1")[1]
    assert b"out1" not in only_err and b"err1" in only_err and only_err[0] == 2  # 8-byte framing, stream 2
    stamped = daemon.docker("logs", "-t", "talker").stdout.splitlines()
    assert stamped[0].endswith(" out1") and stamped[0][:4].isdigit() and "T" in stamped[0].split()[0]
    assert daemon.docker("logs", "--since", "2099-01-01T00:00:00Z", "talker").stdout == ""
    status, body = daemon.api("GET", "/containers/talker/logs")
    assert status == 400 and "at least one stream" in json.loads(body)["message"]
    daemon.docker("rm", "talker", check=True)

    daemon.docker("run", "-d", "--name", "follow", busybox, "sh", "-c",
                  "echo a; sleep 1; echo b; sleep 0.5; exit 0", check=True)
    start = time.monotonic()
    followed = daemon.docker("logs", "-f", "follow")
    assert followed.stdout == "a\nb\n" and time.monotonic() - start < 10  # ended when the container stopped
    daemon.docker("rm", "follow", check=True)


def test_json_file_rotation(daemon: Daemon, busybox: str) -> None:
    cid = daemon.docker("run", "--log-opt", "max-size=10k", "--log-opt", "max-file=3", busybox, "sh", "-c",
                        "i=0; while [ $i -lt 2000 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done",
                        check=True)
    assert cid.returncode == 0
    info = json.loads(daemon.docker("inspect", "-l" if False else "--type", "container",
                                    daemon.docker("ps", "-lq").stdout.strip()).stdout)[0]
    log_path = Path(info["LogPath"])
    files = sorted(p.name for p in log_path.parent.iterdir() if p.name.startswith(log_path.name))
    assert files == [log_path.name, log_path.name + ".1", log_path.name + ".2"]
    for name in files:
        assert (log_path.parent / name).stat().st_size <= 10_000 + 200
        for line in (log_path.parent / name).read_text().splitlines():
            entry = json.loads(line)
            assert set(entry) == {"log", "stream", "time"} and entry["stream"] == "stdout"
    tail = daemon.docker("logs", "--tail", "1", info["Id"]).stdout
    assert tail == "line-1999-padding-padding-padding\n"
    daemon.docker("rm", info["Id"], check=True)


def test_log_drivers_none_local_and_unknown(daemon: Daemon, busybox: str) -> None:
    # none: the output still reaches an attached client, `docker logs` is refused as Docker's (501), LogPath empty.
    run = daemon.docker("run", "--name", "quiet", "--log-driver", "none", busybox, "sh", "-c", "echo attached-out")
    assert run.returncode == 0 and run.stdout == "attached-out\n"
    logs = daemon.docker("logs", "quiet")
    assert logs.returncode == 1 and "configured logging driver does not support reading" in logs.stderr
    status, body = daemon.api("GET", "/containers/quiet/logs?stdout=1")
    assert status == 501 and json.loads(body)["message"] == "configured logging driver does not support reading"
    info = json.loads(daemon.docker("inspect", "quiet", check=True).stdout)[0]
    assert info["LogPath"] == "" and info["HostConfig"]["LogConfig"]["Type"] == "none"
    daemon.docker("rm", "quiet", check=True)
    # More than the internal ring holds goes through attach whole (the ring rotates under the follower).
    big = daemon.docker("run", "--rm", "--log-driver", "none", busybox, "sh", "-c", "yes abcdefghi | head -c 3000000")
    assert big.returncode == 0 and len(big.stdout) == 3_000_000 and set(big.stdout.splitlines()) == {"abcdefghi"}
    # local: read back by `docker logs`, with its own options checked.
    daemon.docker("run", "--name", "local", "--log-driver", "local", "--log-opt", "max-size=1m", busybox,
                  "echo", "kept-locally", check=True)
    assert daemon.docker("logs", "local", check=True).stdout == "kept-locally\n"
    daemon.docker("rm", "local", check=True)
    # Refused at create with Docker's messages (400), and nothing is left behind.
    before = daemon.docker("ps", "-aq").stdout
    for flags, message in (
        (("--log-driver", "syslog"), "logger: no log driver named 'syslog' is registered"),
        (("--log-opt", "max-sise=1m"), "unknown log opt 'max-sise' for json-file log driver"),
        (("--log-driver", "local", "--log-opt", "labels=a"), "unknown log opt 'labels' for local log driver"),
        (("--log-opt", "mode=sometimes"), "logger: logger log option 'mode' is not valid"),
    ):
        created = daemon.docker("create", *flags, busybox, "true")
        assert created.returncode != 0 and message in created.stderr, (flags, created.stderr)
    assert daemon.docker("ps", "-aq").stdout == before
    status, body = daemon.api("POST", "/containers/create", {
        "Image": busybox, "Cmd": ["true"], "HostConfig": {"LogConfig": {"Type": "gelf", "Config": {}}}})
    assert status == 400 and "no log driver named 'gelf'" in json.loads(body)["message"]


def _tar(entries: list[tarfile.TarInfo], payload: bytes = b"evil\n") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info in entries:
            if info.isreg():
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "symlink-escape", "absolute"])
def test_hostile_import_is_refused_with_nothing_written_outside(daemon: Daemon, kind: str, tmp_path: Path) -> None:
    victim = Path("/tmp") / f"adk-victim-{kind}"
    victim.unlink(missing_ok=True)
    entries = []
    if kind == "dotdot":
        entries.append(tarfile.TarInfo(f"../../../../../../../..{victim}"))
    elif kind == "absolute":
        entries.append(tarfile.TarInfo(str(victim)))
    else:
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, "/tmp"
        entries += [link, tarfile.TarInfo(f"escape/{victim.name}")]
    before = daemon.docker("images", "-q").stdout
    status, body = daemon.api("POST", "/images/create?fromSrc=-&repo=evil&tag=1", _tar(entries))
    text = body.decode()
    assert status >= 400 or "error" in text, text
    assert not victim.exists()
    assert daemon.docker("images", "-q").stdout == before
    assert daemon.api("GET", "/images/evil:1/json")[0] == 404
