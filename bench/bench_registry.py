#!/usr/bin/env python3
"""Push and pull against a local registry: aiodock against Docker on this machine, through the same docker CLI.

Usage: python3 bench/bench_registry.py [--mb 100] [--layers 5] [--runs 3] [--skip-docker] [--json OUT]

The image (made offline once, into the bench temp dir): the busybox layer plus --layers - 1 layers that together
hold about --mb MB, each layer half random bytes (incompressible) and half text (compressible). The registry is
Debian's docker-registry (/usr/bin/docker-registry) on a free 127.0.0.1 port, a subprocess with its storage in the
temp dir (loopback registries are insecure by default for both engines).
  push_s   `docker push 127.0.0.1:P/bench-<engine>-<i>:v1` into a fresh, empty registry each time (so nothing is
           "already pushed"), median of --runs
  pull_s   `docker pull` of that image from the registry of the last push (registry warm) after `docker rmi` of
           every tag of the image (engine cold: no layer left locally), median of --runs
  pull_gzip_s  `docker pull` of the image as Docker pushed it (gzip layers, Docker compresses on push), same
           conditions; for Docker the same as pull_s. aiodock pushes the layer blobs it stores (here: the
           uncompressed tars `docker load` gave it), so its own push and pull move more bytes but compress nothing
  registry_bytes  bytes the registry stores after a push (blobs: compressed layers, config, manifest)
  digest_refs_left_after_untag  how often a repo@digest reference kept the image after its last tag was removed
           (Docker removes it with the tag; any left is removed by digest before the pull)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from common import (
    Aiodock,
    Docker,
    Engine,
    busybox_tar,
    cleanup,
    leftovers,
    loadavg,
    print_table,
    timed,
    write_json,
)

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
MTIME = 1704067200
CREATED = "2024-01-01T00:00:00Z"


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.mtime = kind, mode, size, MTIME
    return ti


def _data_layer(index: int, size: int) -> bytes:
    """A layer with /data/<index>/random.bin (size/2 random bytes) and /data/<index>/text.txt (size/2 of text)."""
    rnd = os.urandom(size // 2)
    words = b" ".join(hashlib.sha256(str(i).encode()).hexdigest()[:8].encode() for i in range(4096)) + b"\n"
    text = (words * (size // 2 // len(words) + 1))[: size // 2]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(_info("data", tarfile.DIRTYPE, 0o755))
        tf.addfile(_info(f"data/{index}", tarfile.DIRTYPE, 0o755))
        tf.addfile(_info(f"data/{index}/random.bin", tarfile.REGTYPE, 0o644, len(rnd)), io.BytesIO(rnd))
        tf.addfile(_info(f"data/{index}/text.txt", tarfile.REGTYPE, 0o644, len(text)), io.BytesIO(text))
    return buf.getvalue()


def build_image(directory: Path, total_mb: int, layers: int, tag: str = "bench/big:v1") -> tuple[Path, int]:
    """A docker-save tarball (manifest.json layout) of busybox + layers-1 data layers; (path, uncompressed bytes)."""
    with tarfile.open(busybox_tar(directory)) as src:
        manifest = json.loads(src.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
        base = src.extractfile(manifest["Layers"][0]).read()  # type: ignore[union-attr]
        base_config = json.loads(src.extractfile(manifest["Config"]).read())  # type: ignore[union-attr]
    blobs = [base] + [_data_layer(i, (total_mb << 20) // (layers - 1)) for i in range(1, layers)]
    diff_ids = [hashlib.sha256(b).hexdigest() for b in blobs]
    config = dict(base_config)
    config["rootfs"] = {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]}
    config["history"] = [{"created": CREATED, "created_by": f"/bin/sh -c #(nop) ADD file:{d} in / "}
                         for d in diff_ids]
    config_bytes = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    repo, _, version = tag.rpartition(":")
    files = [(f"blobs/sha256/{d}", b) for d, b in zip(diff_ids, blobs, strict=True)]
    files += [(f"blobs/sha256/{config_hex}", config_bytes),
              ("manifest.json", json.dumps([{"Config": f"blobs/sha256/{config_hex}", "RepoTags": [tag],
                                             "Layers": [f"blobs/sha256/{d}" for d in diff_ids]}]).encode()),
              ("repositories", json.dumps({repo: {version: diff_ids[-1]}}).encode())]
    out = directory / "big.tar"
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("blobs", "blobs/sha256"):
            tf.addfile(_info(d, tarfile.DIRTYPE, 0o755))
        for name, data in files:
            tf.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return out, sum(len(b) for b in blobs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """Debian's docker-registry on a free loopback port, storage in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.host = f"127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.root / "config.yml").write_text("\n".join([
            "version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true", "storage:",
            "  filesystem:", f"    rootdirectory: {self.root / 'data'}", "http:", f"  addr: {self.host}",
            f"  secret: {secrets.token_hex(16)}"]) + "\n")
        log = open(self.root / "registry.log", "ab")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.root / "config.yml")], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("docker-registry did not start: " + (self.root / "registry.log").read_text()) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def image_tags(engine: Engine, image_id: str) -> list[str]:
    out = engine.docker("image", "inspect", "-f", "{{json .RepoTags}}", image_id, check=False)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else []


def remove_image(engine: Engine, image_id: str) -> int:
    """Untag every tag of the image; returns how many repo@digest references still held it afterwards (Docker
    drops a repository's digest reference with its last tag; aiodock, so far, keeps it and with it the image),
    which are then removed by digest."""
    for tag in image_tags(engine, image_id):
        engine.docker("rmi", tag)
    left = 0
    digests = engine.docker("image", "inspect", "-f", "{{json .RepoDigests}}", image_id, check=False)
    if digests.returncode == 0:
        for ref_digest in json.loads(digests.stdout or "[]"):
            left += 1
            engine.docker("rmi", ref_digest)
    if engine.docker("image", "inspect", image_id, check=False).returncode == 0:
        raise RuntimeError(f"{engine.name}: image {image_id} still there after rmi")
    return left


def cold_pulls(engine: Engine, image_id: str, ref: str, runs: int, label: str) -> tuple[list[float], int]:
    pulls, left = [], 0
    for i in range(runs):
        left += remove_image(engine, image_id)
        pulls.append(timed(lambda: engine.docker("pull", ref, timeout=900)))
        print(f"[{engine.name}] {label} {i}: {pulls[-1]:.2f}s", flush=True)
        if engine.docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip() != image_id:
            raise RuntimeError(f"{engine.name}: pulled image id differs from the pushed one")
    return pulls, left


def measure(engine: Engine, tar: Path, work: Path, runs: int, registries: list[Registry],
            gzip_ref: str | None) -> dict[str, Any]:
    """Pushes, then cold pulls of what this engine pushed, then (``gzip_ref``: Docker's push, gzip layers) cold
    pulls of the same image as Docker stores it. The last registry is left running in ``registries``."""
    try:
        engine.start()
        engine.docker("load", "-i", str(tar), timeout=600)
        image_id = engine.docker("image", "inspect", "-f", "{{.Id}}", "bench/big:v1").stdout.strip()
        pushes, ref, stored = [], "", 0
        for i in range(runs):
            reg = Registry(work / f"registry-{engine.name}-{i}")
            registries.append(reg)
            reg.start()
            ref = f"{reg.host}/bench-{engine.name}-{i}:v1"
            engine.docker("tag", "bench/big:v1", ref)
            pushes.append(timed(lambda ref=ref: engine.docker("push", ref, timeout=900)))
            stored = sum(f.stat().st_size for f in (reg.root / "data").rglob("data") if f.is_file())
            print(f"[{engine.name}] push {i}: {pushes[-1]:.2f}s, {stored} bytes in the registry", flush=True)
            if i < runs - 1:
                reg.stop()
        pulls, left = cold_pulls(engine, image_id, ref, runs, "pull")
        out: dict[str, Any] = {"push_s": statistics.median(pushes), "pull_s": statistics.median(pulls)}
        if gzip_ref:
            gz, more = cold_pulls(engine, image_id, gzip_ref, runs, "pull of Docker's push")
            out["pull_gzip_s"] = statistics.median(gz)
            out["pull_gzip_runs"] = gz
            left += more
        else:
            out["pull_gzip_s"] = out["pull_s"]
        out.update({"push_runs": pushes, "pull_runs": pulls, "digest_refs_left_after_untag": left,
                    "registry_bytes": stored, "ref": ref})
        return out
    finally:
        cleanup(engine)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not Path(REGISTRY_BIN).exists():
        raise SystemExit("docker-registry is not installed (apt-get install docker-registry)")
    work = Path(tempfile.mkdtemp(prefix="adk-bench-img-"))
    results: dict[str, Any] = {"config": {"mb": args.mb, "layers": args.layers, "runs": args.runs},
                               "load_before": loadavg()}
    registries: list[Registry] = []
    try:
        tar, size = build_image(work, args.mb, args.layers)
        results["config"]["image_bytes"] = size
        gzip_ref = None
        if not args.skip_docker and shutil.which("dockerd"):  # Docker first: aiodock also pulls Docker's push
            results["docker"] = measure(Docker(), tar, work, args.runs, registries, None)
            gzip_ref = results["docker"]["ref"]
        results["aiodock"] = measure(Aiodock(), tar, work, args.runs, registries, gzip_ref)
    finally:
        for reg in registries:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = loadavg()
    results["leftovers"] = leftovers()
    print_table(results)
    print("leftovers after the run:", results["leftovers"])
    print("written", write_json("registry.json", results, args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
