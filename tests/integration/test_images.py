"""ImageService for real: import, inspect, tag, history, save/load, rmi, prune, rootfs snapshots and mounts."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from aiodock.core import events as ev
from aiodock.core.events import Envelope, EventExchange
from aiodock.core.images import manifest as mf
from aiodock.core.mount import mount_all, mounts_under, unmount
from aiodock.engine.images import ImageService
from aiodock.errors import Conflict, InvalidArgument, NotFound

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mounts")]

REPO = Path(__file__).resolve().parents[2]
APPLETS = ("sh", "echo", "ls", "cat", "sleep", "true", "id")


def load_mkimage() -> Any:
    spec = importlib.util.spec_from_file_location("mkimage_busybox", REPO / "scripts" / "mkimage-busybox.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add(tf: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644,
        linkname: str = "") -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.linkname, ti.size = kind, mode, 1700000000, linkname, len(data)
    tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def busybox_rootfs_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        add(tf, "bin", tarfile.DIRTYPE, mode=0o755)
        add(tf, "bin/busybox", data=Path("/bin/busybox").read_bytes(), mode=0o755)
        for applet in APPLETS:
            add(tf, f"bin/{applet}", tarfile.SYMTYPE, mode=0o777, linkname="busybox")
        add(tf, "etc", tarfile.DIRTYPE, mode=0o755)
        add(tf, "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
        add(tf, "etc/group", data=b"root:x:0:\nnobody:x:65534:\n")
    return buf.getvalue()


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            add(tf, name, data=data)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def archive_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]


class Workspace:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="adk-", dir="/tmp"))
        self.events: list[Envelope] = []

    def service(self, name: str = "root") -> ImageService:
        exchange = EventExchange()
        exchange.add_listener(self.events.append)
        return ImageService(self.dir / name, exchange)

    def close(self) -> None:
        for point in mounts_under(self.dir):
            unmount(Path(point))
        shutil.rmtree(self.dir)


@pytest.fixture
def ws() -> Iterator[Workspace]:
    w = Workspace()
    yield w
    w.close()


@pytest.fixture
async def svc(ws: Workspace) -> AsyncIterator[ImageService]:
    yield ws.service()


@pytest.fixture
def busybox_tar(ws: Workspace) -> Path:
    path = ws.dir / "busybox.tar"
    load_mkimage().build_busybox_image(path)
    return path


async def import_busybox(ws: Workspace, svc: ImageService, repo: str | None = "mybox", tag: str | None = "v1",
                         changes: list[str] | None = None) -> str:
    src = ws.dir / f"rootfs-{secrets.token_hex(3)}.tar.gz"
    src.write_bytes(gzip.compress(busybox_rootfs_tar()))
    return await svc.import_tar(src, repo, tag, changes or [])


async def test_import_then_inspect_in_dockers_shape(ws: Workspace, svc: ImageService) -> None:
    changes = ['CMD ["sh"]', "ENTRYPOINT echo hi", "ENV A=b C=d", "EXPOSE 8080 53/udp", "WORKDIR /srv",
               "LABEL k=v", "USER nobody", "VOLUME /data", "STOPSIGNAL SIGINT"]
    image_id = await import_busybox(ws, svc, changes=changes)
    assert image_id.startswith("sha256:") and len(image_id) == 71
    info = await svc.inspect("mybox:v1")
    assert list(info) == ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Container",
                          "ContainerConfig", "DockerVersion", "Author", "Config", "Architecture", "Os", "Size",
                          "VirtualSize", "GraphDriver", "RootFS", "Metadata"]
    assert info["Id"] == image_id and info["RepoTags"] == ["mybox:v1"] and info["RepoDigests"] == []
    cfg = info["Config"]
    assert cfg["Cmd"] == ["sh"] and cfg["Entrypoint"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["Env"] == ["A=b", "C=d"] and cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert (cfg["WorkingDir"], cfg["User"], cfg["StopSignal"]) == ("/srv", "nobody", "SIGINT")
    assert cfg["Labels"] == {"k": "v"} and cfg["Volumes"] == {"/data": {}}
    assert info["ContainerConfig"]["Hostname"] == "" and info["Os"] == "linux"
    assert info["Architecture"] == mf.host_platform()["architecture"]
    assert info["RootFS"] == {"Type": "layers", "Layers": [sha(busybox_rootfs_tar())]}
    assert info["GraphDriver"]["Name"] == "overlay2" and Path(info["GraphDriver"]["Data"]["UpperDir"]).is_dir()
    assert info["Size"] >= Path("/bin/busybox").stat().st_size
    assert datetime.fromisoformat(info["Created"].replace("Z", "+00:00")).year >= 2024
    assert info["Comment"] == "Imported from -"
    history = await svc.history("mybox:v1")
    assert len(history) == 1 and history[0]["Id"] == image_id and history[0]["Comment"] == "Imported from -"
    assert history[0]["Tags"] == ["mybox:v1"] and history[0]["Size"] == info["Size"]
    # what `ctr images ls` reads: a record whose target is a real manifest with config and layers in content
    rec = svc.images.get("moby", "docker.io/library/mybox:v1")
    assert rec.target.media_type == mf.OCI_MANIFEST
    manifest = mf.parse_manifest(svc.content.read(rec.target.digest))
    assert manifest.config.digest == image_id
    assert all(svc.content.exists(d.digest) for d in manifest.layers)
    assert [(e.topic, e.event.name) for e in ws.events] == [  # type: ignore[attr-defined]
        (ev.IMAGE_CREATE, "docker.io/library/mybox:v1")]
    with pytest.raises(InvalidArgument, match="FROB is not a valid change command"):
        await import_busybox(ws, svc, changes=["FROB x"])


async def test_resolve_by_name_id_and_prefix(ws: Workspace, svc: ImageService) -> None:
    image_id = await import_busybox(ws, svc, repo="mybox", tag=None)
    hexid = image_id.removeprefix("sha256:")
    for ref in ("mybox", "mybox:latest", "docker.io/library/mybox:latest", image_id, hexid, hexid[:12],
                "sha256:" + hexid[:5]):
        assert (await svc.resolve(ref)).id == image_id, ref
    image = await svc.resolve("mybox")
    assert image.repo_tags == ("mybox:latest",) and image.chain_id == sha(busybox_rootfs_tar())
    with pytest.raises(NotFound, match="^No such image: nope$"):
        await svc.resolve("nope")
    with pytest.raises(NotFound, match="No such image: mybox:other"):
        await svc.resolve("mybox:other")


async def test_tag_list_and_filters(ws: Workspace, svc: ImageService) -> None:
    image_id = await import_busybox(ws, svc)
    await svc.tag("mybox:v1", "registry.local:5000/team/app", "2.0")
    await svc.tag(image_id, "other", None)
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        await svc.tag(image_id, "Bad Name", None)
    with pytest.raises(InvalidArgument):
        await svc.tag(image_id, "ok", "bad tag!")
    listed = await svc.list_images()
    assert len(listed) == 1 and listed[0]["Id"] == image_id
    assert listed[0]["RepoTags"] == ["mybox:v1", "other:latest", "registry.local:5000/team/app:2.0"]
    assert listed[0]["Size"] > 0 and listed[0]["Containers"] == -1 and listed[0]["SharedSize"] == -1
    assert [i["Id"] for i in await svc.list_images(filters={"reference": ["other"]})] == [image_id]
    assert await svc.list_images(filters={"reference": ["nothing*"]}) == []
    assert await svc.list_images(filters={"dangling": ["true"]}) == []
    with pytest.raises(InvalidArgument, match="invalid filter 'bogus'"):
        await svc.list_images(filters={"bogus": ["x"]})


async def test_save_then_load_into_a_fresh_service(ws: Workspace, svc: ImageService) -> None:
    image_id = await import_busybox(ws, svc)
    await svc.tag(image_id, "mybox", "v2")
    out = ws.dir / "saved.tar"
    await svc.save(["mybox:v1"], out)
    members = archive_members(out)
    assert {"manifest.json", "index.json", "oci-layout", "repositories"} <= set(members)
    docker_manifest = json.loads(members["manifest.json"])
    assert docker_manifest[0]["RepoTags"] == ["mybox:v1"]
    assert docker_manifest[0]["Config"] == "blobs/sha256/" + image_id.removeprefix("sha256:")
    index = json.loads(members["index.json"])
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/library/mybox:v1"
    fresh = ws.service("fresh")
    assert await fresh.load(out) == ["Loaded image: mybox:v1"]
    assert (await fresh.resolve("mybox:v1")).id == image_id
    # the docker-save layout alone (no index.json), and a save of the whole repository
    docker_only = ws.dir / "docker-only.tar"
    with tarfile.open(docker_only, "w") as tf:
        for name, data in members.items():
            if name not in ("index.json", "oci-layout"):
                add(tf, name, data=data)
    third = ws.service("third")
    assert await third.load(docker_only) == ["Loaded image: mybox:v1"]
    assert (await third.resolve("mybox:v1")).id == image_id
    await svc.save(["mybox"], out)
    assert sorted(json.loads(archive_members(out)["manifest.json"])[0]["RepoTags"]) == ["mybox:v1", "mybox:v2"]


async def test_load_mkimage_busybox_and_an_oci_layout_with_gzip_layers(ws: Workspace, svc: ImageService,
                                                                        busybox_tar: Path) -> None:
    assert await svc.load(busybox_tar) == ["Loaded image: busybox:latest"]
    image = await svc.resolve("busybox")
    assert image.container_config["Cmd"] == ["sh"]
    again = ws.dir / "again.tar"
    load_mkimage().build_busybox_image(again)
    assert archive_members(again) == archive_members(busybox_tar)  # deterministic: a stable image id
    # an OCI image layout (no manifest.json), two gzip layers, named only by annotation
    layers = [tar_of({"a": b"1"}), tar_of({"b": b"2"})]
    packed = [gzip.compress(layer, mtime=0) for layer in layers]
    config = json.dumps({"architecture": mf.host_platform()["architecture"], "os": "linux",
                         "config": {"Cmd": ["/b"]}, "created": "2024-05-01T10:00:00.5Z",
                         "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST,
                           "config": {"mediaType": mf.OCI_CONFIG, "digest": sha(config), "size": len(config)},
                           "layers": [{"mediaType": mf.OCI_LAYER_GZIP, "digest": sha(p), "size": len(p)}
                                      for p in packed]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": mf.OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
        "annotations": {"io.containerd.image.name": "example.com/two/layers:1"}}]}).encode()
    oci = ws.dir / "oci.tar"
    with tarfile.open(oci, "w") as tf:
        add(tf, "oci-layout", data=b'{"imageLayoutVersion":"1.0.0"}')
        add(tf, "index.json", data=index)
        for blob in (config, manifest, *packed):
            add(tf, "blobs/sha256/" + sha(blob).removeprefix("sha256:"), data=blob)
    assert await svc.load(oci) == ["Loaded image: example.com/two/layers:1"]
    info = await svc.inspect("example.com/two/layers:1")
    assert info["Id"] == sha(config) and info["RootFS"]["Layers"] == [sha(x) for x in layers]
    assert info["Created"] == "2024-05-01T10:00:00.5Z" and "LowerDir" in info["GraphDriver"]["Data"]
    mounts = await svc.prepare_rootfs(await svc.resolve(sha(config)), "c-two")
    target = ws.dir / "two"
    mount_all(mounts, target)
    try:
        assert sorted(os.listdir(target)) == ["a", "b"]
    finally:
        unmount(target)
    await svc.remove_rootfs("c-two")


async def test_remove_untags_then_deletes_and_respects_containers(ws: Workspace, svc: ImageService) -> None:
    image_id = await import_busybox(ws, svc)
    short = image_id[7:19]
    await svc.tag(image_id, "second", "x")
    with pytest.raises(Conflict, match=f"^conflict: unable to delete {short} \\(must be forced\\) - image is "
                                       "referenced in multiple repositories$"):
        await svc.remove(image_id)
    assert await svc.remove("second:x") == [{"Untagged": "second:x"}]
    users: list[tuple[str, bool]] = [("c" * 64, False)]
    svc.set_usage_check(lambda iid: users if iid == image_id else [])
    with pytest.raises(Conflict, match=f"unable to delete {short} \\(must be forced\\) - image is being used "
                                       f"by stopped container {'c' * 12}"):
        await svc.remove(image_id)
    users[0] = ("d" * 64, True)
    with pytest.raises(Conflict, match=f"unable to delete {short} \\(cannot be forced\\) - image is being used "
                                       f"by running container {'d' * 12}"):
        await svc.remove(image_id, force=True)
    users[0] = ("c" * 64, False)
    assert await svc.remove("mybox:v1", force=True) == [{"Untagged": "mybox:v1"}]
    dangling = await svc.list_images(filters={"dangling": ["true"]})
    assert [(i["Id"], i["RepoTags"]) for i in dangling] == [(image_id, [])]
    users.clear()
    deleted = await svc.remove(short)
    assert deleted[0] == {"Deleted": image_id} and {"Deleted": sha(busybox_rootfs_tar())} in deleted
    assert await svc.list_images() == [] and svc.snapshotter.list() == [] and svc.content.list() == []
    assert svc.images.list("moby") == []


async def test_retag_makes_dangling_and_prune_removes_it(ws: Workspace, svc: ImageService) -> None:
    first = await import_busybox(ws, svc, changes=["ENV N=1"])
    second = await import_busybox(ws, svc, changes=["ENV N=2"])
    assert first != second
    listed = {i["Id"]: i["RepoTags"] for i in await svc.list_images()}
    assert listed == {first: [], second: ["mybox:v1"]}
    report = await svc.prune()
    assert report["ImagesDeleted"] == [{"Deleted": first}]  # layers are shared with the second image
    assert report["SpaceReclaimed"] == 0
    assert await svc.prune() == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    everything = await svc.prune(dangling_only=False)
    assert {"Untagged": "mybox:v1"} in everything["ImagesDeleted"]
    assert {"Deleted": second} in everything["ImagesDeleted"] and everything["SpaceReclaimed"] > 0
    assert svc.content.list() == [] and svc.snapshotter.list() == []


async def test_malicious_archives_are_refused_and_nothing_is_written(ws: Workspace, svc: ImageService) -> None:
    escape_name = f"adk-escape-{secrets.token_hex(4)}"
    layer = tar_of({"ok": b"1", f"../../../../../../tmp/{escape_name}": b"pwned"})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    bad = ws.dir / "bad.tar"
    with tarfile.open(bad, "w") as tf:
        add(tf, "manifest.json", data=json.dumps([{"Config": "config.json", "RepoTags": ["evil:latest"],
                                                    "Layers": ["layer/layer.tar"]}]).encode())
        add(tf, "config.json", data=config)
        add(tf, "layer/layer.tar", data=layer)
    with pytest.raises(InvalidArgument, match="escapes the layer root"):
        await svc.load(bad)
    assert not os.path.lexists(f"/tmp/{escape_name}")
    assert svc.images.list("moby") == [] and svc.snapshotter.list() == [] and svc.content.list() == []
    traversal = ws.dir / "traversal.tar"
    with tarfile.open(traversal, "w") as tf:
        add(tf, "manifest.json", data=json.dumps([{"Config": "../../../../etc/passwd", "RepoTags": [],
                                                    "Layers": []}]).encode())
    with pytest.raises(InvalidArgument, match="escapes the archive"):
        await svc.load(traversal)
    garbage = ws.dir / "garbage.tar"
    garbage.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(InvalidArgument):
        await svc.load(garbage)
    assert svc.content.list() == [] and os.listdir(svc.content.ingest_dir) == []


async def test_container_rootfs_on_busybox(ws: Workspace, svc: ImageService, busybox_tar: Path) -> None:
    await svc.load(busybox_tar)
    image = await svc.resolve("busybox:latest")
    cid = secrets.token_hex(32)
    mounts = await svc.prepare_rootfs(image, cid)
    assert mounts == await svc.rootfs_mounts(cid) and mounts[0].type == "overlay"
    rootfs = ws.dir / "rootfs"
    mount_all(mounts, rootfs)
    try:
        assert (rootfs / "bin/busybox").is_file() and os.readlink(rootfs / "bin/sh") == "busybox"
        assert "root:x:0:0" in (rootfs / "etc/passwd").read_text()
        run = subprocess.run(["chroot", str(rootfs), "/bin/sh", "-c", "echo hello > /root/f; cat /root/f; id -u"],
                             capture_output=True, text=True, timeout=20)
        assert run.stdout.split() == ["hello", "0"]
    finally:
        unmount(rootfs)
    assert await svc.rootfs_size(cid) >= len("hello\n")
    with pytest.raises(Conflict):
        svc.set_usage_check(lambda iid: [(cid, False)])
        await svc.remove("busybox")
    svc.set_usage_check(lambda iid: [])
    await svc.remove_rootfs(cid)
    await svc.remove_rootfs(cid)  # idempotent
    empty = await svc.prepare_rootfs(None, "no-image")
    assert empty[0].type == "bind"
    await svc.remove_rootfs("no-image")
    await svc.remove("busybox")
    assert svc.snapshotter.list() == []
