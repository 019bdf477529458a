"""docker pull / push / login against a real registry (Debian's docker-registry on loopback), through the real
docker CLI and docker-py; broken blobs and Bearer token auth come from a small aiohttp proxy in front of it."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import socket
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import docker
import pytest

from aiodock.core.images.registry import AuthConfig, normalize_server_address, parse_challenges
from aiodock.engine.pull import progress_bar
from tests.conftest import DOCKER, Daemon
from tests.integration.registry_fixtures import PASSWORD, USER, Proxy, Registry, auth_registry, registry

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(DOCKER is None, reason="needs the docker CLI")]
__all__ = ["auth_registry", "registry"]  # fixtures

DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def image_id(daemon: Daemon, ref: str) -> str:
    return daemon.docker("image", "inspect", "-f", "{{.Id}}", ref, check=True).stdout.strip()


def drop(daemon: Daemon, ref: str) -> None:
    """Remove the image ref names, with every name it has, so its layers are gone from the daemon."""
    proc = daemon.docker("image", "inspect", "-f", "{{.Id}}", ref)
    if proc.returncode == 0:
        daemon.docker("rmi", "-f", proc.stdout.strip(), check=True)


def restore_busybox(daemon: Daemon, repo: str) -> None:
    """Give the module's daemon its busybox:latest back (pulled from ``repo``) after a test dropped it."""
    if daemon.docker("image", "inspect", "busybox:latest").returncode != 0:
        daemon.docker("pull", f"{repo}:latest", check=True)
        daemon.docker("tag", f"{repo}:latest", "busybox:latest", check=True)


def pulled(daemon: Daemon, ref: str, digest: str) -> str:
    """``docker pull ref``'s output, which must report the layers pulled and the manifest digest."""
    out = daemon.docker("pull", ref, check=True).stdout
    assert "Pull complete" in out and f"Digest: {digest}" in out, out
    return out


def local_images(daemon: Daemon) -> set[str]:
    out = daemon.docker("images", "--digests", "--format", "{{.Repository}}:{{.Tag}}@{{.Digest}} {{.ID}}",
                        check=True).stdout
    return set(out.split("\n")) - {""}


def snapshots(daemon: Daemon) -> list[str]:
    root = daemon.data_root / "snapshots" / "overlay" / "snapshots"
    return sorted(os.listdir(root)) if root.exists() else []


@pytest.fixture(scope="module")
def pushed(daemon: Daemon, registry: Registry) -> tuple[str, str, str]:
    """busybox pushed to the registry as <registry>/busybox:latest: (repo, manifest digest, image id)."""
    repo = f"{registry.host}/busybox"
    daemon.docker("tag", "busybox:latest", f"{repo}:latest", check=True)
    out = daemon.docker("push", f"{repo}:latest", check=True).stdout
    assert f"The push refers to repository [{repo}]" in out, out
    assert re.search(r"[0-9a-f]{12}: Pushed", out), out
    m = re.search(r"latest: digest: (sha256:[0-9a-f]{64}) size: (\d+)", out)
    assert m, out
    return repo, m.group(1), image_id(daemon, "busybox:latest")


def recent_events(daemon: Daemon, action: str) -> list[dict[str, Any]]:
    """Docker events of the last minute with that action (GET /events with since and until)."""
    now = time.time()
    query = urllib.parse.quote(json.dumps({"event": [action]}))
    status, body = daemon.api("GET", f"/events?since={now - 60:.9f}&until={now + 0.2:.9f}&filters={query}")
    assert status == 200
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_push_lands_in_the_registry(daemon: Daemon, registry: Registry, pushed: tuple[str, str, str]) -> None:
    repo, digest, _ = pushed
    req = urllib.request.Request(f"http://{registry.host}/v2/busybox/manifests/latest", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json, "
                  "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Docker-Content-Digest"] == digest
        manifest = json.loads(resp.read())
    assert manifest["schemaVersion"] == 2 and manifest["layers"]
    again = daemon.docker("push", f"{repo}:latest", check=True).stdout
    assert "Layer already exists" in again and f"latest: digest: {digest}" in again, again
    assert f"{repo}:latest" in [e["Actor"]["ID"] for e in recent_events(daemon, "push")]
    inspect = json.loads(daemon.docker("image", "inspect", f"{repo}:latest", check=True).stdout)[0]
    assert f"{repo}@{digest}" in inspect["RepoDigests"]


def test_push_of_a_missing_image(daemon: Daemon, registry: Registry) -> None:
    proc = daemon.docker("push", f"{registry.host}/nothing:here")
    assert proc.returncode != 0
    assert f"An image does not exist locally with the tag: {registry.host}/nothing" in proc.stderr


def test_pull_by_tag_and_by_digest_then_run(daemon: Daemon, pushed: tuple[str, str, str]) -> None:
    repo, digest, iid = pushed
    drop(daemon, "busybox:latest")
    assert not [i for i in local_images(daemon) if iid[7:19] in i]
    try:
        out = daemon.docker("pull", f"{repo}:latest", check=True).stdout
        for text in ("latest: Pulling from busybox", "Pulling fs layer", "Download complete", "Pull complete",
                     f"Digest: {digest}", f"Status: Downloaded newer image for {repo}:latest"):
            assert text in out, out
        assert out.strip().endswith(f"{repo}:latest")
        assert image_id(daemon, f"{repo}:latest") == iid
        pulls = recent_events(daemon, "pull")
        assert (f"{repo}:latest", f"{repo}") in [(e["Actor"]["ID"], e["Actor"]["Attributes"]["name"]) for e in pulls]
        run = daemon.docker("run", "--rm", f"{repo}:latest", "echo", "pulled and running", check=True)
        assert run.stdout == "pulled and running\n"
        again = daemon.docker("pull", f"{repo}:latest", check=True).stdout
        assert f"Status: Image is up to date for {repo}:latest" in again, again

        drop(daemon, f"{repo}:latest")
        out = pulled(daemon, f"{repo}@{digest}", digest)
        assert f"Status: Downloaded newer image for {repo}@{digest}" in out, out
        assert any(i.startswith(f"{repo}:<none>@{digest} ") for i in local_images(daemon)), local_images(daemon)
        run = daemon.docker("run", "--rm", f"{repo}@{digest}", "cat", "/etc/passwd", check=True)
        assert run.stdout.startswith("root:x:0:0")
    finally:
        restore_busybox(daemon, repo)


def registry_get(registry: Registry, path: str, accept: str = "") -> bytes:
    req = urllib.request.Request(f"http://{registry.host}{path}", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        data: bytes = resp.read()
    return data


def test_push_gzips_uncompressed_layers_and_keeps_them(daemon: Daemon, registry: Registry,
                                                       pushed: tuple[str, str, str]) -> None:
    """busybox came in by `docker load` (uncompressed layers): the registry gets gzip layers in a Docker schema2
    manifest whose config keeps the uncompressed diff ids; the gzip blobs are kept for later pushes."""
    repo, digest, iid = pushed
    raw_manifest = registry_get(registry, f"/v2/busybox/manifests/{digest}",
                                "application/vnd.docker.distribution.manifest.v2+json")
    assert "sha256:" + hashlib.sha256(raw_manifest).hexdigest() == digest
    manifest = json.loads(raw_manifest)
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert manifest["config"]["digest"] == iid
    config = json.loads(registry_get(registry, f"/v2/busybox/blobs/{iid}"))
    diff_ids = config["rootfs"]["diff_ids"]
    assert len(manifest["layers"]) == len(diff_ids) >= 1
    for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True):
        assert layer["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip", manifest
        blob = registry_get(registry, f"/v2/busybox/blobs/{layer['digest']}")
        assert len(blob) == layer["size"] and "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
        tar = gzip.decompress(blob)
        assert "sha256:" + hashlib.sha256(tar).hexdigest() == diff_id
        assert len(blob) < len(tar) * 0.75, (len(blob), len(tar))  # busybox gzips to about half
        assert layer["digest"] != diff_id

    # Another repository of the same registry: the kept gzip blobs are mounted, nothing is compressed again,
    # and the manifest is byte for byte the same (the same digest).
    copy = f"{registry.host}/copies/busybox"
    daemon.docker("tag", f"{repo}:latest", f"{copy}:latest", check=True)
    out = daemon.docker("push", f"{copy}:latest", check=True).stdout
    assert len(re.findall(r"[0-9a-f]{12}: Mounted from busybox", out)) == len(diff_ids), out
    assert "Pushing" not in out and f"latest: digest: {digest} size: {len(raw_manifest)}" in out, out
    for diff_id in diff_ids:  # progress lines name the layers by diff id, as Docker's
        assert f"{diff_id[7:19]}: Mounted from busybox" in out, out
    again = daemon.docker("push", f"{copy}:latest", check=True).stdout
    assert len(re.findall(r"[0-9a-f]{12}: Layer already exists", again)) == len(diff_ids), again
    out = daemon.docker("rmi", f"{copy}:latest", check=True).stdout
    assert out.splitlines() == [f"Untagged: {copy}:latest", f"Untagged: {copy}@{digest}"], out

    # remove (the gzip blobs kept for pushes go with the image), pull back (schema2, gzip layers) and run
    blobs = daemon.data_root / "content" / "blobs" / "sha256"
    assert all((blobs / layer["digest"][7:]).is_file() for layer in manifest["layers"])
    drop(daemon, "busybox:latest")
    try:
        assert not [d for d in [layer["digest"] for layer in manifest["layers"]] + diff_ids
                    if (blobs / d[7:]).exists()]
        out = pulled(daemon, f"{repo}:latest", digest)
        assert image_id(daemon, f"{repo}:latest") == iid
        run = daemon.docker("run", "--rm", f"{repo}:latest", "echo", "gzip round trip", check=True)
        assert run.stdout == "gzip round trip\n"
    finally:
        restore_busybox(daemon, repo)


def test_rmi_of_the_last_tag_takes_the_digest_references(daemon: Daemon, registry: Registry,
                                                         pushed: tuple[str, str, str]) -> None:
    """Docker's rules: untagging the last tag of a repository also removes that repository's digest references
    (and the image when nothing else names it); an image named only by digest goes with `rmi repo@digest`."""
    repo = f"{registry.host}/rmi/app"
    cid = daemon.docker("create", "busybox:latest", "true", check=True).stdout.strip()
    try:
        iid = daemon.docker("commit", cid, f"{repo}:v1", check=True).stdout.strip()
    finally:
        daemon.docker("rm", cid, check=True)
    out = daemon.docker("push", f"{repo}:v1", check=True).stdout
    m = re.search(r"v1: digest: (sha256:[0-9a-f]{64})", out)
    assert m, out
    digest = m.group(1)

    def gone() -> None:
        ids = daemon.docker("images", "-a", "--no-trunc", "--format", "{{.ID}}", check=True).stdout.split()
        assert iid not in ids
        listed = daemon.docker("images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}",
                               check=True).stdout
        assert repo not in listed and digest not in listed, listed

    def rmi(ref: str) -> list[str]:
        lines = daemon.docker("rmi", ref, check=True).stdout.splitlines()
        assert f"Deleted: {iid}" in lines, lines
        return lines[:lines.index(f"Deleted: {iid}")]

    # the push left repo@digest (RepoDigests); the last tag takes it along, and the image goes
    inspect = json.loads(daemon.docker("image", "inspect", f"{repo}:v1", check=True).stdout)[0]
    assert inspect["RepoDigests"] == [f"{repo}@{digest}"]
    assert rmi(f"{repo}:v1") == [f"Untagged: {repo}:v1", f"Untagged: {repo}@{digest}"]
    gone()

    # pulled by tag: the same
    daemon.docker("pull", f"{repo}:v1", check=True)
    assert rmi(f"{repo}:v1") == [f"Untagged: {repo}:v1", f"Untagged: {repo}@{digest}"]
    gone()

    # pulled by digest: named by its digest only, removed by it
    daemon.docker("pull", f"{repo}@{digest}", check=True)
    assert any(line.startswith(f"{repo}:<none>@{digest} ") for line in local_images(daemon))
    assert rmi(f"{repo}@{digest}") == [f"Untagged: {repo}@{digest}"]
    gone()

    # two tags: the first goes alone, the digest reference stays with the second
    daemon.docker("pull", f"{repo}:v1", check=True)
    daemon.docker("tag", f"{repo}:v1", f"{repo}:v2", check=True)
    out = daemon.docker("rmi", f"{repo}:v1", check=True).stdout
    assert out.splitlines() == [f"Untagged: {repo}:v1"], out
    assert f"{repo}:v2@{digest} {iid[7:19]}" in local_images(daemon), local_images(daemon)

    # a container uses it: 409 without -f, and nothing is untagged
    cid = daemon.docker("create", f"{repo}:v2", "true", check=True).stdout.strip()
    try:
        proc = daemon.docker("rmi", f"{repo}:v2")
        assert proc.returncode == 1
        assert (f'Error response from daemon: conflict: unable to remove repository reference "{repo}:v2" '
                f"(must force) - container {cid[:12]} is using its referenced image {iid[7:19]}") in proc.stderr, \
            proc.stderr
        status, body = daemon.api("DELETE", f"/images/{repo}:v2")
        assert status == 409 and "unable to remove repository reference" in json.loads(body)["message"]
        assert f"{repo}:v2@{digest} {iid[7:19]}" in local_images(daemon)
    finally:
        daemon.docker("rm", cid, check=True)
    assert rmi(f"{repo}:v2") == [f"Untagged: {repo}:v2", f"Untagged: {repo}@{digest}"]
    gone()


def test_pull_unknown_tag_and_repository(daemon: Daemon, registry: Registry, pushed: tuple[str, str, str]) -> None:
    repo = pushed[0]
    proc = daemon.docker("pull", f"{repo}:nope")
    assert proc.returncode == 1
    assert f"manifest for {repo}:nope not found: manifest unknown" in proc.stderr, proc.stderr
    proc = daemon.docker("pull", "127.0.0.1:1/busybox:latest")
    assert proc.returncode == 1 and "127.0.0.1:1" in proc.stderr and "connect" in proc.stderr.lower(), proc.stderr


@pytest.mark.parametrize("mode,message", [("corrupt", "filesystem layer verification failed for digest"),
                                          ("truncate-always", "unexpected EOF")])
def test_broken_blob_fails_cleanly_then_a_real_pull_succeeds(daemon: Daemon, registry: Registry,
                                                             pushed: tuple[str, str, str], mode: str,
                                                             message: str) -> None:
    repo, digest, iid = pushed
    drop(daemon, "busybox:latest")
    try:
        before_images, before_snaps = local_images(daemon), snapshots(daemon)
        with Proxy(registry.host, mode) as proxy:
            proc = daemon.docker("pull", f"{proxy.host}/busybox:latest")
        assert proxy.tampered, "the proxy never served the layer"
        assert proc.returncode == 1, proc.stdout
        assert message in proc.stderr, (proc.stdout, proc.stderr)
        assert "Pull complete" not in proc.stdout
        if mode == "truncate-always":  # transient: retried (resuming) up to 5 attempts, as Docker, then given up
            assert "Retrying in 4 seconds" in proc.stdout, proc.stdout
            assert len([r for _, p, r in proxy.requests if p == proxy.tampered[0]]) == 5, proxy.requests
        else:  # a digest mismatch is not retried
            assert "Retrying" not in proc.stdout, proc.stdout
        assert local_images(daemon) == before_images
        assert snapshots(daemon) == before_snaps
        assert not os.listdir(daemon.data_root / "content" / "ingest")
        pulled(daemon, f"{repo}:latest", digest)
        assert image_id(daemon, f"{repo}:latest") == iid
    finally:
        restore_busybox(daemon, repo)


def test_dropped_download_resumes_with_a_range_request(daemon: Daemon, registry: Registry,
                                                       pushed: tuple[str, str, str]) -> None:
    """The connection drops a third into the layer: the pull retries, asks for the rest with Range, succeeds."""
    repo, digest, iid = pushed
    drop(daemon, "busybox:latest")
    try:
        with Proxy(registry.host, "truncate") as proxy:
            out = daemon.docker("pull", f"{proxy.host}/busybox:latest", check=True).stdout
            ref = f"{proxy.host}/busybox:latest"
            assert proxy.tampered, "the proxy never dropped the layer"
            assert "Retrying in 1 second" in out and "Pull complete" in out and f"Digest: {digest}" in out, out
            ranged = [(m, p, r) for m, p, r in proxy.requests if p == proxy.tampered[0] and r]
            assert ranged and ranged[0][0] == "GET" and re.fullmatch(r"bytes=[1-9][0-9]*-", ranged[0][2]), \
                proxy.requests
            assert image_id(daemon, ref) == iid
            run = daemon.docker("run", "--rm", ref, "echo", "resumed", check=True)
            assert run.stdout == "resumed\n"
        assert not os.listdir(daemon.data_root / "content" / "ingest")
        daemon.docker("rmi", ref, check=True)
    finally:
        restore_busybox(daemon, repo)


def test_interrupted_pull_is_cancelled_and_leaves_nothing(daemon: Daemon, registry: Registry,
                                                          pushed: tuple[str, str, str]) -> None:
    repo, _, iid = pushed
    drop(daemon, "busybox:latest")
    try:
        before_images, before_snaps = local_images(daemon), snapshots(daemon)
        with Proxy(registry.host, "stall") as proxy:
            with socket.socket(socket.AF_UNIX) as sock:  # a client that goes away mid-download (Ctrl-C)
                sock.settimeout(20)
                sock.connect(str(daemon.socket))
                sock.sendall(f"POST /images/create?fromImage={proxy.host}/busybox&tag=latest HTTP/1.1\r\n"
                             "Host: docker\r\nContent-Length: 0\r\n\r\n".encode())
                seen = b""
                while b'"Downloading"' not in seen:
                    chunk = sock.recv(65536)
                    assert chunk, seen
                    seen += chunk
            ingest = daemon.data_root / "content" / "ingest"
            deadline = time.monotonic() + 10
            while os.listdir(ingest) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not os.listdir(ingest), "the cancelled download left its partial blob"
        assert local_images(daemon) == before_images and snapshots(daemon) == before_snaps
        assert not any(iid[7:19] in line for line in local_images(daemon))
    finally:
        daemon.docker("pull", f"{repo}:latest", check=True)
        daemon.docker("tag", f"{repo}:latest", "busybox:latest", check=True)


def test_docker_py_push_pull_and_registry_data(daemon: Daemon, registry: Registry) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.41")
    try:
        repo = f"{registry.host}/py/busybox"
        assert client.images.get("busybox:latest").tag(repo, "v1")
        lines = list(client.images.push(repo, tag="v1", stream=True, decode=True))
        assert not [ln for ln in lines if "error" in ln], lines
        aux = [ln["aux"] for ln in lines if "aux" in ln]
        assert aux and aux[0]["Tag"] == "v1" and DIGEST_RE.fullmatch(aux[0]["Digest"]) and aux[0]["Size"] > 0
        data = client.images.get_registry_data(f"{repo}:v1")
        assert data.id == aux[0]["Digest"]
        assert data.has_platform("linux")
        client.images.remove(f"{repo}:v1")
        image = client.images.pull(repo, tag="v1")
        assert f"{repo}:v1" in image.tags
        assert image.id == client.images.get("busybox:latest").id
        with pytest.raises(docker.errors.NotFound, match="manifest unknown"):
            client.images.pull(repo, tag="v3")
        image.tag(repo, "v2")
        client.images.push(repo, tag="v2")
        client.images.remove(f"{repo}:v1")
        client.images.remove(f"{repo}:v2")
        pulled = client.images.pull(repo, all_tags=True)  # no tag: every tag of the repository
        assert sorted(t for i in pulled for t in i.tags if t.startswith(repo)) == [f"{repo}:v1", f"{repo}:v2"]
    finally:
        client.close()


def test_login_against_htpasswd_registry(daemon: Daemon, auth_registry: Registry, tmp_path: Path) -> None:
    host = auth_registry.host
    repo = f"{host}/secret/busybox"
    daemon.docker("tag", "busybox:latest", f"{repo}:latest", check=True)
    try:
        denied = daemon.docker("push", f"{repo}:latest")
        assert denied.returncode == 1 and "no basic auth credentials" in denied.stderr, denied.stderr
        wrong = daemon.docker("login", "-u", USER, "--password-stdin", host, input=b"wrong-password\n")
        assert wrong.returncode == 1
        assert f"login attempt to http://{host}/v2/ failed with status: 401 Unauthorized" in wrong.stderr, \
            wrong.stderr
        ok = daemon.docker("login", "-u", USER, "--password-stdin", host, input=PASSWORD.encode() + b"\n")
        assert ok.returncode == 0 and "Login Succeeded" in ok.stdout, (ok.stdout, ok.stderr)
        out = daemon.docker("push", f"{repo}:latest", check=True).stdout
        assert "latest: digest: sha256:" in out
        daemon.docker("rmi", f"{repo}:latest", check=True)
        out = daemon.docker("pull", f"{repo}:latest", check=True).stdout
        assert f"Status: Downloaded newer image for {repo}:latest" in out, out
        daemon.docker("rmi", f"{repo}:latest", check=True)
    finally:
        daemon.docker("logout", host)
        daemon.docker("rmi", f"{repo}:latest")
    anonymous = daemon.docker("pull", f"{repo}:latest")
    assert anonymous.returncode == 1 and "no basic auth credentials" in anonymous.stderr, anonymous.stderr
    status, body = daemon.api("POST", "/auth", {"username": USER, "password": "nope", "serveraddress": host})
    assert status == 401 and "401 Unauthorized" in json.loads(body)["message"]


def test_bearer_token_flow(daemon: Daemon, registry: Registry) -> None:
    with Proxy(registry.host, "token") as proxy:
        repo = f"{proxy.host}/tok/busybox"
        anonymous = daemon.docker("pull", f"{repo}:latest")
        assert anonymous.returncode == 1, anonymous.stdout
        assert f"pull access denied for {repo}, repository does not exist or may require 'docker login'" \
            in anonymous.stderr, anonymous.stderr
        wrong = daemon.docker("login", "-u", USER, "--password-stdin", proxy.host, input=b"bad\n")
        assert wrong.returncode == 1 and "unauthorized: incorrect username or password" in wrong.stderr, \
            wrong.stderr
        ok = daemon.docker("login", "-u", USER, "--password-stdin", proxy.host, input=PASSWORD.encode() + b"\n")
        assert ok.returncode == 0 and "Login Succeeded" in ok.stdout, ok.stderr
        daemon.docker("tag", "busybox:latest", f"{repo}:latest", check=True)
        try:
            out = daemon.docker("push", f"{repo}:latest", check=True).stdout
            assert "latest: digest: sha256:" in out
            scoped = [q for q in proxy.token_requests if "scope=repository:tok/busybox:pull,push" in q]
            assert len(scoped) == 1, proxy.token_requests  # one token, cached for the whole push
            daemon.docker("rmi", f"{repo}:latest", check=True)
            out = daemon.docker("pull", f"{repo}:latest", check=True).stdout
            assert f"Status: Downloaded newer image for {repo}:latest" in out, out
        finally:
            daemon.docker("logout", proxy.host)
            daemon.docker("rmi", f"{repo}:latest")


def test_pull_selects_the_host_platform_from_an_index(daemon: Daemon, registry: Registry,
                                                      pushed: tuple[str, str, str]) -> None:
    repo, digest, iid = pushed
    with urllib.request.urlopen(urllib.request.Request(
            f"http://{registry.host}/v2/busybox/manifests/{digest}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}), timeout=10) as resp:
        size = len(resp.read())
    child = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size}
    arch = json.loads(daemon.docker("image", "inspect", iid, check=True).stdout)[0]["Architecture"]
    other = "s390x" if arch != "s390x" else "ppc64le"
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {**child, "platform": {"architecture": "riscv64", "os": "linux"}},
        {**child, "platform": {"architecture": arch, "os": "linux"}},
    ]}).encode()
    req = urllib.request.Request(f"http://{registry.host}/v2/busybox/manifests/multi", data=index, method="PUT",
                                 headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        index_digest = resp.headers["Docker-Content-Digest"]
    try:
        out = daemon.docker("pull", f"{repo}:multi", check=True).stdout
        assert f"Digest: {index_digest}" in out, out
        inspect = json.loads(daemon.docker("image", "inspect", f"{repo}:multi", check=True).stdout)[0]
        assert inspect["Id"] == iid and f"{repo}@{index_digest}" in inspect["RepoDigests"]
        proc = daemon.docker("pull", "--platform", f"linux/{other}", f"{repo}:multi")
        assert proc.returncode == 1
        assert f"no matching manifest for linux/{other} in the manifest list entries" in proc.stderr, proc.stderr
        proc = daemon.docker("pull", "--platform", "linux/riscv64", f"{repo}:multi")
        assert proc.returncode == 1 and "does not match the specified platform: wanted linux/riscv64" in proc.stderr
        status, body = daemon.api("GET", f"/distribution/{repo}:multi/json")
        assert status == 200
        dist = json.loads(body)
        assert dist["Descriptor"]["digest"] == index_digest
        assert [p["architecture"] for p in dist["Platforms"]] == ["riscv64", arch]
    finally:
        daemon.docker("rmi", f"{repo}:multi")


def test_wire_formats() -> None:
    """What the CLI sends and renders: X-Registry-Auth decoding, challenges, server addresses, progress bars."""
    import base64
    raw = json.dumps({"username": "u", "password": "p=?", "serveraddress": "h:5000"}).encode()
    for encoded in (base64.urlsafe_b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        assert AuthConfig.from_header(encoded) == AuthConfig("u", "p=?", "h:5000")
    assert AuthConfig.from_header("e30=") == AuthConfig() and AuthConfig.from_header("%%%") == AuthConfig()
    legacy = base64.b64encode(json.dumps({"auth": base64.b64encode(b"a:b:c").decode()}).encode()).decode()
    assert AuthConfig.from_header(legacy).password == "b:c"
    [bearer] = parse_challenges(['Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"'])
    assert bearer.scheme == "bearer" and bearer.params["scope"] == "repository:a:pull"
    assert normalize_server_address("https://index.docker.io/v1/") == "docker.io"
    assert normalize_server_address("http://127.0.0.1:5000/v2/") == "127.0.0.1:5000"
    assert progress_bar(0, 2129920) == "[>" + " " * 50 + "]       0B/2.13MB"
    assert progress_bar(1064960, 2129920) == "[" + "=" * 25 + ">" + " " * 25 + "]  1.065MB/2.13MB"
