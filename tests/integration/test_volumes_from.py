"""--volumes-from shares another container's volumes (named and anonymous) and binds, read-write or read-only."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


def test_volumes_from_shares_anonymous_and_named_volumes(daemon: Daemon, busybox: str) -> None:
    daemon.docker("run", "--name", "vsource", "-v", "/anon", "-v", "vfnamed:/named", busybox, "sh", "-c",
                  "echo a > /anon/f; echo n > /named/f", check=True)
    try:
        out = daemon.docker("run", "--rm", "--volumes-from", "vsource", busybox, "sh", "-c",
                            "cat /anon/f /named/f; echo more >> /anon/f", check=True).stdout
        assert out == "a\nn\n"
        ro = daemon.docker("run", "--rm", "--volumes-from", "vsource:ro", busybox, "sh", "-c",
                           "cat /anon/f; touch /named/x 2>/dev/null || echo read-only")
        assert ro.stdout == "a\nmore\nread-only\n", ro.stderr
        daemon.docker("create", "--name", "vuser", "--volumes-from", "vsource", busybox, "true", check=True)
        mounts = {m["Destination"]: m for m in json.loads(daemon.docker("inspect", "vuser").stdout)[0]["Mounts"]}
        assert mounts["/named"]["Name"] == "vfnamed" and mounts["/anon"]["Type"] == "volume"
        status, body = daemon.api("POST", "/containers/create", {"Image": busybox, "Cmd": ["true"],
                                                                  "HostConfig": {"VolumesFrom": ["nosuch"]}})
        assert status == 404 and json.loads(body)["message"] == "No such container: nosuch"
    finally:
        daemon.docker("rm", "-f", "vuser", "vsource")
        daemon.docker("volume", "rm", "vfnamed")
        daemon.docker("volume", "prune", "-f")


def test_cp_archive_mode_takes_the_container_users_ids(daemon: Daemon, busybox: str) -> None:
    import tempfile
    from pathlib import Path

    host = Path(tempfile.mkdtemp(prefix="adk-cp-", dir="/tmp"))
    try:
        (host / "f").write_text("owned\n")
        daemon.docker("run", "-d", "--name", "cpowner", "--user", "nobody", busybox, "sleep", "30", check=True)
        daemon.docker("cp", "-a", str(host / "f"), "cpowner:/tmp/f", check=True)
        out = daemon.docker("exec", "cpowner", "stat", "-c", "%u:%g", "/tmp/f", check=True).stdout.strip()
        assert out == "65534:65534"  # nobody's uid and gid from the image's passwd
    finally:
        daemon.docker("rm", "-f", "cpowner")
        import shutil
        shutil.rmtree(host)


def test_volume_subpath_mounts_one_directory_of_the_volume(daemon: Daemon, busybox: str) -> None:
    daemon.docker("volume", "create", "subvol", check=True)
    try:
        daemon.docker("run", "--rm", "-v", "subvol:/v", busybox, "sh", "-c",
                      "mkdir -p /v/a && echo inside-a > /v/a/f && echo top > /v/top && ln -s / /v/escape",
                      check=True)

        def run_with(subpath: str) -> tuple[int, str]:
            status, body = daemon.api("POST", "/containers/create", {
                "Image": busybox, "Cmd": ["sh", "-c", "ls /data; cat /data/f"],
                "HostConfig": {"Mounts": [{"Type": "volume", "Source": "subvol", "Target": "/data",
                                           "VolumeOptions": {"Subpath": subpath}}]}})
            if status != 201:
                return status, json.loads(body)["message"]
            cid = json.loads(body)["Id"]
            try:
                started = daemon.api("POST", f"/containers/{cid}/start")
                if started[0] != 204:
                    return started[0], json.loads(started[1])["message"]
                daemon.api("POST", f"/containers/{cid}/wait")
                return 204, daemon.docker("logs", cid).stdout
            finally:
                daemon.api("DELETE", f"/containers/{cid}?force=1")

        assert run_with("a") == (204, "f\ninside-a\n")  # only a/ is visible, not top
        status, message = run_with("../../etc")
        assert status == 400 and "relative path inside the volume" in message
        status, message = run_with("escape")  # a symlink in the volume pointing at the host's /
        assert status == 400 and "leads outside the volume" in message
        status, message = run_with("missing")
        assert status == 400 and "no such directory" in message
    finally:
        daemon.docker("volume", "rm", "subvol")
