#!/usr/bin/env python3
"""Write a docker-save tarball of a busybox image built from the host's /bin/busybox (busybox-static).

Usage: python3 scripts/mkimage-busybox.py OUT.tar [--tag busybox:latest]

The archive has both layouts `docker load` reads: manifest.json (+ repositories) and the OCI layout
(index.json, oci-layout, blobs/sha256/...). Output is deterministic (fixed mtimes), so the image id is stable
for a given busybox binary. Standard library only; tests import build_busybox_image() from this file.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import subprocess
import sys
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
MTIME = 1704067200  # 2024-01-01T00:00:00Z
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def _applets(busybox: Path) -> list[str]:
    out = subprocess.run([str(busybox), "--list"], check=True, capture_output=True, text=True).stdout
    return sorted({name.strip() for name in out.split() if name.strip() and name.strip() != "busybox"})


def _info(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mtime = MTIME
    ti.size = size
    ti.linkname = linkname
    return ti


def _layer(busybox: Path) -> bytes:
    binary = busybox.read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(_info("bin", tarfile.DIRTYPE, 0o755))
        tf.addfile(_info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), io.BytesIO(binary))
        for applet in _applets(busybox):
            tf.addfile(_info(f"bin/{applet}", tarfile.SYMTYPE, 0o777, linkname="busybox"))
        tf.addfile(_info("etc", tarfile.DIRTYPE, 0o755))
        tf.addfile(_info("etc/group", tarfile.REGTYPE, 0o644, len(GROUP)), io.BytesIO(GROUP))
        tf.addfile(_info("etc/passwd", tarfile.REGTYPE, 0o644, len(PASSWD)), io.BytesIO(PASSWD))
        for name, mode in (("home", 0o755), ("root", 0o700), ("tmp", 0o1777), ("var", 0o755)):
            tf.addfile(_info(name, tarfile.DIRTYPE, mode))
    return buf.getvalue()


def _full_name(tag: str) -> tuple[str, str, str]:
    """(full reference, familiar repository, tag) for a name like busybox:latest or host:5000/x/y:v1."""
    slash = tag.rfind("/")
    colon = tag.rfind(":")
    repo, version = (tag[:colon], tag[colon + 1:]) if colon > slash else (tag, "latest")
    first, _, rest = repo.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        full = "docker.io/" + (repo if "/" in repo else "library/" + repo)
    else:
        full = repo
    return f"{full}:{version}", repo, version


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_busybox_image(out: Path, tag: str = "busybox:latest", busybox: Path = BUSYBOX) -> None:
    """Write the docker-save tarball of the busybox image to ``out``."""
    layer = _layer(busybox)
    layer_hex = _sha(layer)
    config = {
        "architecture": _arch(),
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
        "created": CREATED,
        "history": [
            {"created": CREATED, "created_by": f"/bin/sh -c #(nop) ADD file:{layer_hex} in / "},
            {"created": CREATED, "created_by": '/bin/sh -c #(nop)  CMD ["sh"]', "empty_layer": True},
        ],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_hex}"]},
    }
    if config["architecture"] == "arm64":
        config["variant"] = "v8"
    config_bytes = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
    config_hex = _sha(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{config_hex}",
                   "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": f"sha256:{layer_hex}",
                    "size": len(layer)}],
    }
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    manifest_hex = _sha(manifest_bytes)
    full, repo, version = _full_name(tag)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{manifest_hex}",
            "size": len(manifest_bytes),
            "annotations": {"io.containerd.image.name": full, "org.opencontainers.image.ref.name": version},
        }],
    }
    docker_manifest = [{"Config": f"blobs/sha256/{config_hex}", "RepoTags": [f"{repo}:{version}"],
                        "Layers": [f"blobs/sha256/{layer_hex}"]}]
    files = [
        (f"blobs/sha256/{config_hex}", config_bytes),
        (f"blobs/sha256/{layer_hex}", layer),
        (f"blobs/sha256/{manifest_hex}", manifest_bytes),
        ("index.json", json.dumps(index, separators=(",", ":")).encode()),
        ("manifest.json", json.dumps(docker_manifest, separators=(",", ":")).encode()),
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("repositories", json.dumps({repo: {version: layer_hex}}, separators=(",", ":")).encode()),
    ]
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("blobs", "blobs/sha256"):
            tf.addfile(_info(d, tarfile.DIRTYPE, 0o755))
        for name, data in files:
            tf.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a docker-save tarball of a busybox image.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--tag", default="busybox:latest")
    parser.add_argument("--busybox", type=Path, default=BUSYBOX)
    args = parser.parse_args(argv)
    build_busybox_image(args.out, args.tag, args.busybox)
    return 0


if __name__ == "__main__":
    sys.exit(main())
