"""The daemon's own flags: --config-file (daemon.json), --pidfile, a bad config, a missing runtime, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Daemon, new_daemon_root

pytestmark = pytest.mark.root


def start(root: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "aiodock.daemon.main", "-H", f"unix://{root}/d.sock",
                             "--data-root", str(root / "data"), "--exec-root", str(root / "exec"), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_config_file_pidfile_and_sigterm(busybox_tar: Path) -> None:
    root = new_daemon_root()
    d = Daemon(root)
    try:
        config = root / "daemon.json"
        config.write_text(json.dumps({"log-opts": {"max-size": "1k", "max-file": "2"},
                                      "cgroup-parent": d.cgroup_parent}))
        pidfile = root / "aiodock.pid"
        proc = start(root, "--config-file", str(config), "--pidfile", str(pidfile))
        d.socket = root / "d.sock"
        d.host = f"unix://{d.socket}"
        d.env["DOCKER_HOST"] = d.host
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not d.socket.exists():
            time.sleep(0.05)
        while time.monotonic() < deadline and d.api("GET", "/_ping")[0] != 200:
            time.sleep(0.05)
        assert pidfile.read_text().strip() == str(proc.pid)
        d.load(busybox_tar)
        cid = d.docker("run", "-d", "busybox", "sh", "-c",
                       "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done", check=True).stdout.strip()
        d.docker("wait", cid, check=True)
        log = Path(json.loads(d.docker("inspect", cid).stdout)[0]["LogPath"])
        assert sorted(p.name for p in log.parent.glob(log.name + "*")) == [log.name, log.name + ".1"]
        second = start(root, "--pidfile", str(pidfile))  # a second daemon on the same pidfile refuses
        _, err = second.communicate(timeout=30)
        assert second.returncode == 1 and "pid file found, ensure aiodock is not running" in err
        d.docker("rm", cid, check=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert not pidfile.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        d.destroy()


@pytest.mark.parametrize(("config", "message"), [
    ("{not json", "invalid JSON"),
    (json.dumps({"no-such-option": 1}), "unknown option 'no-such-option'"),
])
def test_bad_config_file_is_refused(config: str, message: str) -> None:
    root = new_daemon_root()
    try:
        (root / "daemon.json").write_text(config)
        proc = start(root, "--config-file", str(root / "daemon.json"))
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1 and message in err and "Traceback" not in err
    finally:
        import shutil
        shutil.rmtree(root, ignore_errors=True)


def test_missing_runtime_is_refused() -> None:
    root = new_daemon_root()
    try:
        proc = start(root, "--default-runtime", "no-such-runc")
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "OCI runtime 'no-such-runc' not found" in err and "Traceback" not in err
        assert not os.path.exists(root / "d.sock")
    finally:
        import shutil
        shutil.rmtree(root, ignore_errors=True)


def test_ready_is_sent_to_systemd_notify_socket() -> None:
    import shutil
    import socket

    root = new_daemon_root()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(root / "notify.sock"))
    notify.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=str(root / "notify.sock"))
    proc = subprocess.Popen([sys.executable, "-m", "aiodock.daemon.main", "-H", f"unix://{root}/d.sock",
                             "--data-root", str(root / "data"), "--exec-root", str(root / "exec")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert notify.recv(64) == b"READY=1"
        assert (root / "d.sock").exists()  # ready means serving
        proc.send_signal(signal.SIGTERM)
        assert notify.recv(64) == b"STOPPING=1"
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
        shutil.rmtree(root, ignore_errors=True)
