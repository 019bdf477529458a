"""Registry endpoints as dockerd reaches them, through the real docker CLI against real docker-registry processes:
TLS with a certs.d folder (CA, client certificate), insecure registries with the HTTPS -> HTTP fallback, a
docker.io mirror, cross-repository mounts and chunked uploads, zstd layers, and GET /images/search.

The TLS and insecure registries listen on the test daemon's own bridge gateway address (not loopback: 127.0.0.0/8
and ::1 are always insecure, as in Docker, so certificates are only checked elsewhere); nothing leaves the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from tests.conftest import DOCKER, Daemon, new_daemon_root
from tests.integration.registry_fixtures import REGISTRY_BIN, Proxy, Registry, registry

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(DOCKER is None, reason="needs the docker CLI"),
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")]
__all__ = ["registry"]  # fixture


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(folder: Path, ip: str) -> dict[str, Path]:
    """A CA, a server certificate for ``ip`` signed by it, a client CA and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, subject in (("ca", "/CN=aiodock test CA"), ("clientca", "/CN=aiodock test client CA")):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
                "-keyout", str(folder / f"{name}.key"), "-out", str(folder / f"{name}.crt"),
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        out[name] = folder / f"{name}.crt"
    (folder / "server.ext").write_text(f"subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ca, subject in (("server", "ca", f"/CN={ip}"), ("client", "clientca", "/CN=aiodock client")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", str(folder / f"{name}.key"),
                "-out", str(folder / f"{name}.csr"))
        openssl("x509", "-req", "-in", str(folder / f"{name}.csr"), "-CA", str(folder / f"{ca}.crt"),
                "-CAkey", str(folder / f"{ca}.key"), "-CAcreateserial", "-days", "2",
                "-extfile", str(folder / f"{name}.ext"), "-out", str(folder / f"{name}.crt"))
        out[name], out[f"{name}_key"] = folder / f"{name}.crt", folder / f"{name}.key"
    return out


class Setup:
    def __init__(self, daemon: Daemon, certs_dir: Path, pki: dict[str, Path], tls: Registry,
                 mtls: Registry, insecure: Registry, plain: Registry, mirror: Proxy) -> None:
        self.daemon, self.certs_dir, self.pki = daemon, certs_dir, pki
        self.tls, self.mtls, self.insecure, self.plain, self.mirror = tls, mtls, insecure, plain, mirror


@pytest.fixture(scope="module")
def setup(busybox_tar: Path, registry: Registry) -> Iterator[Setup]:
    """One daemon: --registry-certs-dir, insecure registries from daemon.json and the flag, the loopback
    ``registry`` (behind a logging proxy) as docker.io mirror; four registries on the daemon's bridge address."""
    if not Path(REGISTRY_BIN).exists():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    root = new_daemon_root()
    certs_dir = root / "certs.d"
    certs_dir.mkdir()
    d = Daemon(root)
    ip = d.bip.split("/")[0]
    pki = make_pki(root / "pki", ip)
    server = (pki["server"], pki["server_key"])
    regs = [Registry(Path(tempfile.mkdtemp(prefix="aiodock-registry-")), False, ip, tls, clientcas)
            for tls, clientcas in ((server, None), (server, pki["clientca"]), (None, None), (None, None))]
    tls_reg, mtls_reg, insecure_reg, plain_reg = regs
    with Proxy(registry.host) as mirror:
        (root / "daemon.json").write_text(json.dumps({
            "insecure-registries": ["10.254.0.0/16"], "registry-mirrors": [f"http://{mirror.host}"]}))
        d.extra_args = ["--config-file", str(root / "daemon.json"), "--registry-certs-dir", str(certs_dir),
                        "--insecure-registry", insecure_reg.host]
        try:
            d.start()
            d.load(busybox_tar)
            # The bridge, and so its address, comes up with the first container on the default network.
            d.docker("run", "--rm", "busybox", "true", check=True)
            for reg in regs:
                reg.start()
            yield Setup(d, certs_dir, pki, tls_reg, mtls_reg, insecure_reg, plain_reg, mirror)
            d.remove_all_containers()
            d.stop()
            d.assert_clean()
        finally:
            for reg in regs:
                reg.stop()
                shutil.rmtree(reg.root, ignore_errors=True)
            d.stop()
            d.destroy()


def image_id(daemon: Daemon, ref: str) -> str:
    return daemon.docker("image", "inspect", "-f", "{{.Id}}", ref, check=True).stdout.strip()


def forget(daemon: Daemon, *refs: str) -> None:
    for ref in refs:
        daemon.docker("rmi", ref)


def test_tls_registry_with_the_ca_in_certs_d(setup: Setup) -> None:
    d, reg = setup.daemon, setup.tls
    ref = f"{reg.host}/tls/busybox:latest"
    d.docker("tag", "busybox:latest", ref, check=True)
    try:
        # No CA for it: HTTPS with the system CAs only, verification fails, as Docker words it.
        proc = d.docker("push", ref)
        assert proc.returncode == 1, proc.stdout
        assert "tls: failed to verify certificate: x509: certificate signed by unknown authority" in proc.stderr, \
            proc.stderr
        proc = d.docker("pull", ref)
        assert proc.returncode == 1
        assert f'Get "https://{reg.host}/v2/' in proc.stderr and "x509: certificate signed by unknown authority" \
            in proc.stderr, proc.stderr
        status, body = d.api("POST", f"/images/create?fromImage={urllib.parse.quote(ref)}")
        assert status != 500 and "x509" in json.loads(body)["message"], (status, body)

        folder = setup.certs_dir / reg.host
        folder.mkdir()
        shutil.copy(setup.pki["ca"], folder / "ca.crt")
        out = d.docker("push", ref, check=True).stdout
        assert re.search(r"latest: digest: sha256:[0-9a-f]{64}", out), out
        d.docker("rmi", ref, check=True)
        out = d.docker("pull", ref, check=True).stdout
        assert f"Status: Downloaded newer image for {ref}" in out, out
        assert d.docker("run", "--rm", ref, "echo", "over tls", check=True).stdout == "over tls\n"
    finally:
        forget(d, ref)


def test_registry_demanding_a_client_certificate(setup: Setup) -> None:
    d, reg = setup.daemon, setup.mtls
    ref = f"{reg.host}/mtls/busybox:latest"
    folder = setup.certs_dir / reg.host
    folder.mkdir()
    shutil.copy(setup.pki["ca"], folder / "ca.crt")
    d.docker("tag", "busybox:latest", ref, check=True)
    try:
        proc = d.docker("push", ref)  # the CA alone: the registry refuses the handshake
        assert proc.returncode == 1, proc.stdout
        assert "tls: certificate required" in proc.stderr or "tls: bad certificate" in proc.stderr, proc.stderr

        shutil.copy(setup.pki["client"], folder / "client.cert")
        shutil.copy(setup.pki["client_key"], folder / "client.key")
        d.docker("push", ref, check=True)
        d.docker("rmi", ref, check=True)
        out = d.docker("pull", ref, check=True).stdout
        assert f"Status: Downloaded newer image for {ref}" in out, out
    finally:
        forget(d, ref)


def test_insecure_registry_falls_back_to_http(setup: Setup) -> None:
    d = setup.daemon
    ok, refused = f"{setup.insecure.host}/plain/busybox:latest", f"{setup.plain.host}/plain/busybox:latest"
    d.docker("tag", "busybox:latest", ok, check=True)
    d.docker("tag", "busybox:latest", refused, check=True)
    try:
        d.docker("push", ok, check=True)  # HTTPS fails, then plain HTTP: it is listed as insecure
        d.docker("rmi", ok, check=True)
        assert "Downloaded newer image" in d.docker("pull", ok, check=True).stdout
        proc = d.docker("push", refused)  # not listed: HTTPS only
        assert proc.returncode == 1
        assert "http: server gave HTTP response to HTTPS client" in proc.stderr, proc.stderr
        proc = d.docker("pull", refused)
        assert proc.returncode == 1 and "http: server gave HTTP response to HTTPS client" in proc.stderr
    finally:
        forget(d, ok, refused)


def test_info_shows_the_registry_config(setup: Setup) -> None:
    d = setup.daemon
    config = json.loads(d.docker("info", "--format", "{{json .RegistryConfig}}", check=True).stdout)
    mirror = f"http://{setup.mirror.host}/"
    assert config["InsecureRegistryCIDRs"] == ["10.254.0.0/16", "::1/128", "127.0.0.0/8"], config
    assert config["Mirrors"] == [mirror]
    assert config["IndexConfigs"]["docker.io"] == {"Name": "docker.io", "Mirrors": [mirror], "Secure": True,
                                                   "Official": True}
    assert config["IndexConfigs"][setup.insecure.host] == {"Name": setup.insecure.host, "Mirrors": [],
                                                           "Secure": False, "Official": False}
    text = d.docker("info", check=True).stdout
    assert re.search(r"Insecure Registries:\n(\s+\S+\n)*\s+10\.254\.0\.0/16\n", text), text
    assert re.search(r"Registry Mirrors:\n\s+" + re.escape(mirror), text), text


def test_bad_registry_flags_stop_the_daemon(tmp_path: Path) -> None:
    for flag, message in ((["--registry-mirror", "ftp://mirror"], "invalid mirror"),
                          (["--insecure-registry", "http://host:5000"], "should not contain '://'")):
        proc = subprocess.run([sys.executable, "-m", "aiodock.daemon.main", "-H", f"unix://{tmp_path}/s.sock",
                               "--data-root", str(tmp_path / "data"), "--exec-root", str(tmp_path / "exec"), *flag],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    help_text = subprocess.run([sys.executable, "-m", "aiodock.daemon.main", "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "--registry-certs-dir" in help_text and "--insecure-registry" in help_text
    assert "--registry-mirror" in help_text


def test_docker_io_pull_through_the_mirror(setup: Setup, registry: Registry, busybox_tar: Path) -> None:
    """library/busybox is in the mirror only: `docker pull busybox` gets it there, without internet."""
    d, mirror = setup.daemon, setup.mirror
    iid = image_id(d, "busybox:latest")
    seeded = f"{registry.host}/library/busybox:latest"
    d.docker("tag", "busybox:latest", seeded, check=True)
    d.docker("push", seeded, check=True)
    d.docker("rmi", "-f", iid, check=True)
    try:
        out = d.docker("pull", "busybox", check=True).stdout
        assert "Using default tag: latest" in out and "Status: Downloaded newer image for busybox:latest" in out, out
        assert ("GET", "/v2/library/busybox/manifests/latest", "") in mirror.requests, mirror.requests
        assert image_id(d, "busybox:latest") == iid
        assert image_id(d, "docker.io/library/busybox:latest") == iid
        assert d.docker("run", "--rm", "busybox", "echo", "mirrored", check=True).stdout == "mirrored\n"
    finally:
        if d.docker("image", "inspect", "busybox:latest").returncode != 0:
            d.load(busybox_tar)
        forget(d, seeded)


def test_chunked_upload_and_cross_repository_mount(setup: Setup, registry: Registry) -> None:
    """A layer compressed on push goes up in one streamed PATCH (as Docker sends it); pushing it to another
    repository of the same registry mounts it ("Mounted from"); a stored compressed blob over 1 MiB goes up in
    1 MiB PATCH chunks with Content-Range."""
    d = setup.daemon
    name = "adk-big-" + os.urandom(3).hex()
    d.docker("run", "--name", name, "busybox", "dd", "if=/dev/urandom", "of=/big", "bs=1M", "count=3",
             check=True, timeout=120)
    with Proxy(registry.host) as proxy, Proxy(setup.insecure.host) as elsewhere:
        first, second = f"{proxy.host}/chunks/big:v1", f"{proxy.host}/other/big:v1"
        third = f"{elsewhere.host}/chunks/big:v1"
        try:
            d.docker("commit", name, first, check=True)
            out = d.docker("push", first, check=True, timeout=120).stdout
            assert re.search(r"[0-9a-f]{12}: Pushed", out), out
            patches = [r for m, _, r in proxy.requests if m == "PATCH"]
            assert "" in patches, proxy.requests  # the new layer, compressed as it streams: no Content-Range
            puts = [p for m, p, _ in proxy.requests if m == "PUT" and "/blobs/uploads/" in p]
            assert puts and all("digest=sha256" in p for p in puts)

            d.docker("tag", first, second, check=True)
            out = d.docker("push", second, check=True).stdout
            assert re.search(r"[0-9a-f]{12}: Mounted from chunks/big", out), out
            assert any(m == "POST" and "mount=sha256" in p and "from=chunks/big" in urllib.parse.unquote(p)
                       for m, p, _ in proxy.requests), proxy.requests
            digest = re.search(r"v1: digest: (sha256:[0-9a-f]{64})", out)
            assert digest, out
            req = urllib.request.Request(f"http://{registry.host}/v2/other/big/manifests/v1", method="HEAD",
                                         headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                                                            "application/vnd.oci.image.manifest.v1+json"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.headers["Docker-Content-Digest"] == digest.group(1)

            # pulled back, the layer is stored gzipped (3 MiB of random data): pushed as it is, in chunks
            d.docker("rm", "-f", name, check=True)
            forget(d, first, second)
            d.docker("pull", first, check=True, timeout=120)
            d.docker("tag", first, third, check=True)
            out = d.docker("push", third, check=True, timeout=120).stdout
            assert re.search(r"[0-9a-f]{12}: Pushed", out), out
            ranges = [r for m, _, r in elsewhere.requests if m == "PATCH"]
            assert "0-1048575" in ranges and "1048576-2097151" in ranges, elsewhere.requests
        finally:
            d.docker("rm", "-f", name)
            forget(d, first, second, third)


# ---- zstd layers -----------------------------------------------------------------------------------------------


def _upload(host: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"http://{host}/v2/{repo}/blobs/uploads/", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=30) as resp:
        location = urllib.parse.urljoin(f"http://{host}/", resp.headers["Location"])
    sep = "&" if "?" in location else "?"
    req = urllib.request.Request(f"{location}{sep}digest={digest}", method="PUT", data=data,
                                 headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201
    return digest


def test_zstd_layer_pull_and_run(setup: Setup, registry: Registry) -> None:
    busybox = Path(shutil.which("busybox") or "/bin/busybox")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for directory in ("bin",):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(info)
        tf.add(busybox, "bin/busybox")
        text = b"hello from a zstd layer\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(text)
        tf.addfile(info, io.BytesIO(text))
    tar = raw.getvalue()
    layer = zstandard.ZstdCompressor(level=3).compress(tar)
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = json.dumps({"architecture": arch, "os": "linux", "created": "2026-01-01T00:00:00Z",
                         "config": {"Cmd": ["/bin/busybox", "cat", "/hello.txt"]},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
                         "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "test"}]}).encode()
    repo = "zstd/hello"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                   "digest": _upload(registry.host, repo, config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "size": len(layer),
                    "digest": _upload(registry.host, repo, layer)}]}).encode()
    req = urllib.request.Request(f"http://{registry.host}/v2/{repo}/manifests/v1", method="PUT", data=manifest,
                                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201
    d, ref = setup.daemon, f"{registry.host}/{repo}:v1"
    try:
        out = d.docker("pull", ref, check=True).stdout
        assert "Pull complete" in out, out
        assert d.docker("run", "--rm", ref, check=True).stdout == "hello from a zstd layer\n"
        assert d.docker("run", "--rm", ref, "/bin/busybox", "ls", "/bin", check=True).stdout.split() == ["busybox"]
    finally:
        forget(d, ref)


# ---- search ----------------------------------------------------------------------------------------------------


class SearchIndex:
    """A v1 search endpoint (what index.docker.io serves) on loopback, recording the queries it got."""

    RESULTS = [
        {"name": "library/busybox", "description": "Busybox base image.", "star_count": 10, "is_official": True,
         "is_automated": False},
        {"name": "someone/busybox-tools", "description": "tools", "star_count": 2, "is_official": False,
         "is_automated": False},
        {"name": "other/busy", "description": "busy", "star_count": 5, "is_official": False,
         "is_automated": False},
    ]

    def __init__(self) -> None:
        self.queries: list[dict[str, list[str]]] = []
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/v1/_ping":
                    body = b"true"
                elif url.path == "/v1/search":
                    query = urllib.parse.parse_qs(url.query)
                    index.queries.append(query)
                    limit = int(query.get("n", ["25"])[0])
                    found = [r for r in index.RESULTS if query.get("q", [""])[0] in str(r["name"])][:limit]
                    body = json.dumps({"num_results": len(found), "query": query.get("q", [""])[0],
                                       "results": found}).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def test_search_against_a_v1_index(setup: Setup) -> None:
    d, index = setup.daemon, SearchIndex()
    try:
        out = d.docker("search", f"{index.host}/busy", check=True).stdout
        lines = out.splitlines()
        assert lines[0].split()[:2] == ["NAME", "DESCRIPTION"], out
        assert [line.split()[0] for line in lines[1:]] == ["library/busybox", "someone/busybox-tools", "other/busy"]
        assert index.queries[-1] == {"q": ["busy"], "n": ["25"]}
        out = d.docker("search", "--filter", "is-official=true", "--format", "{{.Name}} {{.StarCount}}",
                       f"{index.host}/busy", check=True).stdout
        assert out == "library/busybox 10\n"
        out = d.docker("search", "--filter", "stars=3", "--format", "{{.Name}}", f"{index.host}/busy",
                       check=True).stdout
        assert out.split() == ["library/busybox", "other/busy"]
        out = d.docker("search", "--limit", "1", "--format", "{{.Name}}", f"{index.host}/busy", check=True).stdout
        assert out.split() == ["library/busybox"] and index.queries[-1]["n"] == ["1"]
        status, body = d.api("GET", f"/images/search?term={index.host}/busybox")
        assert status == 200 and json.loads(body) == [
            {"star_count": 10, "is_official": True, "name": "library/busybox", "is_automated": False,
             "description": "Busybox base image."},
            {"star_count": 2, "is_official": False, "name": "someone/busybox-tools", "is_automated": False,
             "description": "tools"}]
    finally:
        index.close()


def test_search_errors(setup: Setup, registry: Registry) -> None:
    d = setup.daemon
    proc = d.docker("search", "--filter", "foo=bar", f"{registry.host}/busybox")
    assert proc.returncode == 1 and "invalid filter 'foo'" in proc.stderr, proc.stderr
    filters = urllib.parse.quote(json.dumps({"stars": ["many"]}))
    status, body = d.api("GET", f"/images/search?term=busybox&filters={filters}")
    assert status == 400 and json.loads(body)["message"].startswith("invalid filter 'stars=many'"), body
    status, body = d.api("GET", "/images/search?term=busybox&limit=0")
    assert (status, json.loads(body)) == (400, {"message": "limit 0 is outside the range of [1, 100]"})
    # docker-registry has no v1 search: worded as dockerd words it, with the registry's status (dockerd says 500).
    proc = d.docker("search", f"{registry.host}/busybox")
    assert proc.returncode == 1 and "Unexpected status code 404" in proc.stderr, proc.stderr
    status, body = d.api("GET", f"/images/search?term={registry.host}/busybox")
    assert (status, json.loads(body)) == (404, {"message": "Unexpected status code 404"}), body
    # Nothing listening: an invalid endpoint (400), after HTTPS then HTTP for this insecure (loopback) index.
    with socket_closed_port() as port:
        status, body = d.api("GET", f"/images/search?term=127.0.0.1:{port}/busybox")
    message = json.loads(body)["message"]
    assert status == 400 and message.startswith(f'invalid registry endpoint "http://127.0.0.1:{port}/v1/". '
                                                "HTTPS attempt:"), body
    assert "connection refused" in message


@contextlib.contextmanager
def socket_closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, never listening, for the duration)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_registry_options_as_dockerd_reads_them() -> None:
    from aiodock.core.images.registry import RegistryOptions, split_search_term
    from aiodock.errors import InvalidArgument

    opts = RegistryOptions.create(Path("/certs"), ["10.1.0.0/16", "reg.example:5000", "10.9.9.9"],
                                  ["https://mirror.example"])
    assert opts.mirrors == ("https://mirror.example/",)
    assert [str(n) for n in opts.networks] == ["10.1.0.0/16", "::1/128", "127.0.0.0/8"]
    assert not await opts.is_secure("10.1.2.3:5000") and not await opts.is_secure("127.0.0.1:5000")
    assert not await opts.is_secure("reg.example:5000") and not await opts.is_secure("10.9.9.9")
    assert await opts.is_secure("10.9.9.9:5000") and await opts.is_secure("docker.io")
    endpoints = await opts.endpoints("docker.io")
    assert [(e.base, e.mirror) for e in endpoints] == [("https://mirror.example", True),
                                                       ("https://registry-1.docker.io", False)]
    assert [e.base for e in await opts.endpoints("10.1.2.3:5000")] == ["https://10.1.2.3:5000", "http://10.1.2.3:5000"]
    for bad_mirror in ("ftp://m", "https://m/path", "https://u:p@m"):
        with pytest.raises(InvalidArgument):
            RegistryOptions.create(mirrors=[bad_mirror])
    with pytest.raises(InvalidArgument, match="should not contain '://'"):
        RegistryOptions.create(insecure_registries=["http://reg:5000"])
    assert split_search_term("busybox") == ("docker.io", "busybox")
    assert split_search_term("library/busybox") == ("docker.io", "library/busybox")
    assert split_search_term("index.docker.io/busybox") == ("docker.io", "busybox")
    assert split_search_term("localhost:5000/a/b") == ("localhost:5000", "a/b")
