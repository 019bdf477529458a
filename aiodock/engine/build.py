"""Docker's legacy builder (POST /build without BuildKit): a Dockerfile run step by step against the engine.

Each step makes an image, as Docker's classic builder does (only the result is kept: there is no cache to use
the others): RUN runs the command in a container of the current
image and commits it; COPY and ADD put files from the build context into a created (never started) container and
commit it; the other instructions change the image config only (an image with the same layers and an
``empty_layer`` history entry). Output is Docker's JSON message stream ("Step 2/5 : RUN ...", " ---> <id>",
the RUN's own output, "Successfully built", "Successfully tagged", an ``aux`` message with the image id, and
``errorDetail`` on failure). Multi-stage builds: every FROM starts a stage (``AS name``), ``COPY --from=<stage|image>``
copies out of another stage's image, ``target`` stops at a stage.

The build context is an untrusted tarball: it is unpacked by the layer code, which refuses entries that would leave
the directory, into a temporary directory under the data root, and COPY sources are resolved inside it. There is no
build cache: every step runs (``docker build`` says nothing of "Using cache").
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiodock.core import layers
from aiodock.engine.archive import ArchiveService, Root
from aiodock.engine.backend import AttachOptions, BuildOptions
from aiodock.engine.commit import CommitService
from aiodock.engine.containers import ContainerService
from aiodock.engine.dockerfile import (
    CONFIG_INSTRUCTIONS,
    DEFAULT_SHELL,
    SUBSTITUTED,
    Instruction,
    apply_instruction,
    parse,
    substitute,
)
from aiodock.engine.images import Image, ImageService
from aiodock.errors import AiodockError, NotFound
from aiodock.log import get_logger

log = get_logger("aiodock.engine.build")

#: Build arguments Docker knows without an ARG (proxies); others given with --build-arg but never declared warn.
PREDEFINED_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                             "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})


class BuildFailed(AiodockError):
    """A step failed: reported in the stream as errorDetail (code: the RUN's exit status, if any)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Stage:
    name: str
    image: Image
    config: dict[str, Any]  # the image config being built (its "config" key is the container config)
    shell: tuple[str, ...] = DEFAULT_SHELL
    args: dict[str, str] = field(default_factory=dict)  # ARG values in scope
    cmd_set: bool = False  # a CMD of this stage (an ENTRYPOINT after it keeps it)


class Builder:
    def __init__(self, *, containers: ContainerService, images: ImageService, commits: CommitService,
                 archives: ArchiveService, work_root: Path) -> None:
        self._containers = containers
        self._images = images
        self._commits = commits
        self._archives = archives
        self._work_root = work_root

    async def build(self, context: Path, options: BuildOptions) -> AsyncGenerator[dict[str, Any], None]:
        """Docker's build messages, one dict each; a failure ends the stream with an errorDetail message."""
        self._work_root.mkdir(parents=True, exist_ok=True)
        workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="build-", dir=self._work_root))
        try:
            run = _Run(self, options, workdir / "context")
            async for message in run.execute(context):
                yield message
        except BuildFailed as exc:
            detail: dict[str, Any] = {"message": exc.message}
            if exc.code is not None:
                detail["code"] = exc.code
            yield {"errorDetail": detail, "error": exc.message}
        except AiodockError as exc:
            yield {"errorDetail": {"message": exc.message}, "error": exc.message}
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)


class _Run:
    """One build: the context, the stages made so far, the messages."""

    def __init__(self, builder: Builder, options: BuildOptions, context_dir: Path) -> None:
        self.b = builder
        self.options = options
        self.context_dir = context_dir
        self.stages: list[_Stage] = []
        self.global_args: dict[str, str] = {}
        self.used_args: set[str] = set()
        self.containers: list[str] = []  # intermediate containers still to remove
        self.images: list[str] = []  # images made by the steps; all but the result are removed at the end
        self.result: str | None = None

    def say(self, text: str) -> dict[str, Any]:
        return {"stream": text}

    async def execute(self, context: Path) -> AsyncIterator[dict[str, Any]]:
        await asyncio.to_thread(_unpack_context, context, self.context_dir)
        dockerfile = await asyncio.to_thread(_read_dockerfile, self.context_dir, self.options.dockerfile)
        instructions = parse(dockerfile)
        if self.options.target and not any(
                i.name == "FROM" and _stage_name(i) == self.options.target.lower() for i in instructions):
            raise BuildFailed(f"failed to reach build target {self.options.target} in Dockerfile")
        total = len(instructions)
        stage: _Stage | None = None
        try:
            for number, instruction in enumerate(instructions, start=1):
                if instruction.name == "FROM" and stage is not None and self.options.target \
                        and stage.name == self.options.target.lower():
                    break  # the target stage is complete
                if not self.options.quiet:
                    yield self.say(f"Step {number}/{total} : {instruction.original}\n")
                async for message in self.step(instruction, stage):
                    if not self.options.quiet or "aux" in message:
                        yield message
                stage = self.stages[-1] if self.stages else None
                if stage is not None and not self.options.quiet:
                    yield self.say(f" ---> {_short(stage.image.id)}\n")
            if stage is None:
                raise BuildFailed("No image was generated. Is your Dockerfile empty?")
            if self.options.labels:
                current = stage.config["config"]
                labels = {**(current.get("Labels") or {}), **self.options.labels}
                await self.commit_config(stage, {**current, "Labels": labels}, "LABEL")
            unused = sorted(k for k in self.options.build_args if k not in self.used_args
                            and k not in PREDEFINED_ARGS)
            if unused and not self.options.quiet:
                yield self.say(f"[Warning] One or more build-args {unused} were not consumed\n")
            image_id = self.result = stage.image.id
            yield {"aux": {"ID": image_id}}
            if not self.options.quiet:
                yield self.say(f"Successfully built {_short(image_id)}\n")
            for tag in self.options.tags:
                repo, sep, name = tag.rpartition(":")
                if not sep or "/" in name:
                    repo, name = tag, "latest"
                await self.b._images.tag(image_id, repo, name)
                if not self.options.quiet:
                    yield self.say(f"Successfully tagged {repo}:{name}\n")
        finally:
            for cid in self.containers:
                try:
                    await self.b._containers.remove(cid, force=True, volumes=True)
                except AiodockError:
                    pass
            # No build cache would use them: the intermediate images go (their layers stay with the result).
            for made in reversed(self.images):
                if made != self.result:
                    try:
                        await self.b._images.remove(made, prune=False)
                    except AiodockError:  # in use by a container kept after a failed step, or already gone
                        pass

    # ---- steps ------------------------------------------------------------------------------------------------

    async def step(self, ins: Instruction, stage: _Stage | None) -> AsyncIterator[dict[str, Any]]:
        if ins.name == "FROM":
            await self.from_(ins)
            return
        if ins.name == "ARG":
            self.arg(ins, stage)
            return
        if stage is None:
            raise BuildFailed("Please provide a source image with `from` prior to commit")
        env = self.substitution_env(stage)
        rest = substitute(ins.rest, env) if ins.name in SUBSTITUTED else ins.rest
        shown = f"{ins.name} {rest}" if ins.name in SUBSTITUTED else ins.original  # the history's created_by
        config = stage.config["config"]
        if ins.name == "RUN":
            async for message in self.run(ins, stage):
                yield message
        elif ins.name in ("COPY", "ADD"):
            await self.copy(ins, stage, env)
        elif ins.name in CONFIG_INSTRUCTIONS:
            if ins.name == "ONBUILD":  # its triggers would have to run in the builds that use this image
                raise BuildFailed("ONBUILD is not supported by aiodock's builder")
            changed = json.loads(json.dumps(config))
            apply_instruction(changed, ins.name, rest.strip(), stage.shell)
            if ins.name == "ENTRYPOINT" and not stage.cmd_set:
                changed.pop("Cmd", None)  # as Docker: ENTRYPOINT resets a CMD inherited from the base image
            stage.cmd_set |= ins.name == "CMD"
            await self.commit_config(stage, changed, shown)
        elif ins.name == "MAINTAINER":
            stage.config["author"] = rest
            await self.commit_config(stage, config, shown)
        elif ins.name == "SHELL":
            if ins.json_args is None or not ins.json_args:
                raise BuildFailed("SHELL requires the arguments to be in JSON form")
            stage.shell = tuple(ins.json_args)
            await self.commit_config(stage, {**config, "Shell": list(ins.json_args)}, shown)
        elif ins.name == "HEALTHCHECK":
            await self.commit_config(stage, {**config, "Healthcheck": _healthcheck(ins, stage.shell)}, shown)

    async def from_(self, ins: Instruction) -> None:
        words = substitute(ins.rest, self.global_args).split()
        if not words or (len(words) not in (1, 3)) or (len(words) == 3 and words[1].lower() != "as"):
            raise BuildFailed("FROM requires either one or three arguments")
        ref, name = words[0], (words[2].lower() if len(words) == 3 else str(len(self.stages)))
        stage = next((s for s in self.stages if s.name == ref.lower()), None)
        if stage is not None:
            image = stage.image
        elif ref == "scratch":
            image = await self.scratch()
        else:
            image = await self.b._images.resolve(ref) if await self._image_exists(ref) else await self.pull(ref)
        config = json.loads(json.dumps(image.config))
        config.setdefault("config", {})
        shell = tuple(config["config"].get("Shell") or DEFAULT_SHELL)
        self.stages.append(_Stage(name, image, config, shell=shell))

    async def scratch(self) -> Image:
        """FROM scratch: an image of one empty layer (the store has no image without layers), removed with the
        other intermediates once the build ends."""
        empty = self.context_dir.parent / "scratch.tar"
        await asyncio.to_thread(empty.write_bytes, bytes(1024))  # a tar archive with no entry
        image_id = await self.b._images.import_tar(empty, None, None, [])
        self.images.append(image_id)
        return await self.b._images.resolve(image_id)

    async def _image_exists(self, ref: str) -> bool:
        try:
            await self.b._images.resolve(ref)
            return True
        except NotFound:
            return False

    async def pull(self, ref: str) -> Image:
        repo, sep, tag = ref.rpartition(":")
        if not sep or "/" in tag:
            repo, tag = ref, "latest"
        async for message in await self.b._images.pull(repo, tag):
            if message.get("error"):
                raise BuildFailed(str(message["error"]))
        return await self.b._images.resolve(ref)

    def arg(self, ins: Instruction, stage: _Stage | None) -> None:
        scope = stage.args if stage is not None else self.global_args
        env = self.substitution_env(stage) if stage is not None else dict(self.global_args)
        for word in substitute(ins.rest, env).split():
            name, sep, default = word.partition("=")
            if name in self.options.build_args and self.options.build_args[name] is not None:
                value: str | None = self.options.build_args[name]
                self.used_args.add(name)
            elif sep:
                value = default.strip('"')
            elif stage is not None and name in self.global_args:
                value = self.global_args[name]  # ARG without a value in a stage: the global one
            else:
                value = None
            if value is not None:
                scope[name] = value
            elif name in self.options.build_args:
                self.used_args.add(name)

    def substitution_env(self, stage: _Stage | None) -> dict[str, str]:
        if stage is None:
            return dict(self.global_args)
        env = dict(stage.args)
        env.update(_env_pairs(stage.config["config"].get("Env") or []))
        return env

    async def commit_config(self, stage: _Stage, container_config: dict[str, Any], created_by: str) -> None:
        """A config-only step: the same layers, the new container config, an empty_layer history entry."""
        new = {k: v for k, v in stage.config.items() if k not in ("history", "rootfs")}
        new["config"] = container_config
        new["created"] = _now()
        history = {"created": new["created"], "created_by": f"/bin/sh -c #(nop)  {created_by}"}
        image_id = await self.b._images.commit_config(stage.image, new, history)
        self._advance(stage, await self.b._images.resolve(image_id))

    async def run(self, ins: Instruction, stage: _Stage) -> AsyncIterator[dict[str, Any]]:
        config = stage.config["config"]
        command = list(ins.json_args) if ins.json_args is not None else [*stage.shell, ins.rest]
        build_env = [f"{k}={v}" for k, v in stage.args.items()
                     if k not in dict(_env_pairs(config.get("Env") or []))]
        body = {**{k: v for k, v in config.items() if k not in ("Healthcheck", "ExposedPorts")},
                "Image": stage.image.id, "Cmd": command, "Entrypoint": None,
                "Env": list(config.get("Env") or []) + build_env, "AttachStdout": True, "AttachStderr": True,
                "Tty": False, "OpenStdin": False, "Labels": dict(config.get("Labels") or {}),
                "HostConfig": {"NetworkMode": "bridge"}}
        cid, _ = await self.b._containers.create(None, body)
        self.containers.append(cid)
        yield self.say(f" ---> Running in {_short(cid)}\n")
        _, output, _ = await self.b._containers.attach(cid, AttachOptions(stream=True, stdout=True, stderr=True))
        waiter = await self.b._containers.wait(cid, "next-exit")
        await self.b._containers.start(cid)
        async for chunk in output:
            text = chunk.data.decode(errors="replace")
            if text:
                yield self.say(text)
        result = await waiter
        if result.status_code != 0:
            shown = json.dumps(command) if ins.json_args is not None else " ".join(command)
            if not self.options.force_remove:
                self.containers.remove(cid)  # kept for inspection, as Docker does without --force-rm
            raise BuildFailed(f"The command '{shown}' returned a non-zero code: {result.status_code}",
                              code=result.status_code)
        image_id = await self.b._commits.commit(cid, None, None, "", stage.config.get("author", ""), [], False, {},
                                                image_config=dict(config))
        if self.options.remove:
            await self.b._containers.remove(cid, force=True, volumes=True)
            self.containers.remove(cid)
            yield self.say(f"Removing intermediate container {_short(cid)}\n")
        image = await self.b._images.resolve(image_id)
        self._advance(stage, image)

    async def copy(self, ins: Instruction, stage: _Stage, env: dict[str, str]) -> None:
        parts = list(ins.json_args) if ins.json_args is not None else substitute(ins.rest, env).split()
        if len(parts) < 2:
            raise BuildFailed(f"{ins.name} requires at least two arguments")
        *sources, dest = [substitute(p, env) if ins.json_args is not None else p for p in parts]
        origin = ins.flag("from")
        config = stage.config["config"]
        if origin is not None and ins.name == "ADD":
            raise BuildFailed("ADD does not support --from")
        source_root = await self.stage_root(origin) if origin is not None else self.context_dir
        chown = ins.flag("chown")
        tar_path: Path | None = None
        try:
            dest = posixpath.join(config.get("WorkingDir") or "/", dest)
            wildcard = any(any(c in source for c in "*?[") for source in sources)
            if (len(sources) > 1 or wildcard) and not parts[-1].endswith("/"):
                raise BuildFailed(f"When using {ins.name} with more than one source file, the destination "
                                  "must be a directory and end with a /")
            handle, name = await asyncio.to_thread(tempfile.mkstemp, ".tar", "copy-", self.context_dir.parent)
            os.close(handle)
            tar_path = Path(name)
            await asyncio.to_thread(_copy_tar, source_root, sources, parts[-1].endswith("/") or len(sources) > 1,
                                    dest, tar_path, ins.name == "ADD", chown)
            body = {**config, "Image": stage.image.id, "Cmd": ["/bin/sh", "-c", f"#(nop) {ins.original}"],
                    "Entrypoint": None, "HostConfig": {"NetworkMode": "none"}}
            cid, _ = await self.b._containers.create(None, body)
            self.containers.append(cid)
            async with self.b._containers.container_root(cid) as (_, root_path):
                await asyncio.to_thread(_ensure_dirs, str(root_path), tar_path)
            await self.b._archives.put_archive(cid, "/", tar_path)
            image_id = await self.b._commits.commit(cid, None, None, "", stage.config.get("author", ""), [], False,
                                                    {}, image_config=dict(config))
            await self.b._containers.remove(cid, force=True, volumes=True)
            self.containers.remove(cid)
            self._advance(stage, await self.b._images.resolve(image_id))
        finally:
            if tar_path is not None:
                await asyncio.to_thread(tar_path.unlink, True)
            if source_root != self.context_dir:
                await asyncio.to_thread(shutil.rmtree, source_root, True)

    async def stage_root(self, origin: str) -> Path:
        """The files of another stage (or image) for ``COPY --from``: exported to a temporary directory."""
        stage = next((s for s in self.stages if s.name == origin.lower()), None)
        image = stage.image if stage is not None else (
            await self.b._images.resolve(origin) if await self._image_exists(origin) else await self.pull(origin))
        cid, _ = await self.b._containers.create(None, {"Image": image.id, "Cmd": ["true"],
                                                        "HostConfig": {"NetworkMode": "none"}})
        self.containers.append(cid)
        out = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="from-", dir=self.context_dir.parent))
        tar_path = out.with_suffix(".tar")
        fh = await asyncio.to_thread(open, tar_path, "wb")
        try:
            async for chunk in await self.b._commits.export(cid):
                await asyncio.to_thread(fh.write, chunk)
        finally:
            await asyncio.to_thread(fh.close)
        await asyncio.to_thread(layers.apply_layer, tar_path, out, overlay=False)
        await asyncio.to_thread(tar_path.unlink)
        await self.b._containers.remove(cid, force=True, volumes=True)
        self.containers.remove(cid)
        return out

    def _advance(self, stage: _Stage, image: Image) -> None:
        """The stage continues from the image its last step made."""
        self.images.append(image.id)
        stage.image = image
        stage.config = json.loads(json.dumps(image.config))


# ---- helpers (blocking ones run in threads) -------------------------------------------------------------------


def _short(image_or_container_id: str) -> str:
    return image_or_container_id.removeprefix("sha256:")[:12]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stage_name(ins: Instruction) -> str:
    words = ins.rest.split()
    return words[2].lower() if len(words) == 3 else ""


def _env_pairs(env: list[str]) -> list[tuple[str, str]]:
    return [(item.partition("=")[0], item.partition("=")[2]) for item in env]


def _healthcheck(ins: Instruction, shell: tuple[str, ...]) -> dict[str, Any]:
    rest = ins.rest
    if rest.strip().upper() == "NONE":
        return {"Test": ["NONE"]}
    word, _, command = rest.partition(" ")
    if word.upper() != "CMD":
        raise BuildFailed("Unknown type \"" + word + "\" in HEALTHCHECK (try CMD)")
    command = command.strip()
    try:
        value = json.loads(command) if command.startswith("[") else None
    except ValueError:
        value = None
    test = ["CMD", *value] if isinstance(value, list) else ["CMD-SHELL", command]
    check: dict[str, Any] = {"Test": test}
    for key, flag in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start-period")):
        if ins.flag(flag):
            check[key] = _duration_ns(ins.flag(flag) or "")
    if ins.flag("retries"):
        check["Retries"] = int(ins.flag("retries") or 0)
    return check


def _duration_ns(text: str) -> int:
    units = {"ns": 1, "us": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "").isdigit():
            return int(float(text[: -len(unit)]) * units[unit])
    raise BuildFailed(f"time: invalid duration \"{text}\"")


def _unpack_context(context: Path, dest: Path) -> None:
    """The build context tarball (plain or compressed) unpacked under ``dest``, refusing escaping entries."""
    dest.mkdir()
    if context.stat().st_size == 0:
        return
    if not _is_archive(context):  # `docker build - < Dockerfile`: the body is the Dockerfile itself
        shutil.copyfile(context, dest / "Dockerfile")
        return
    layers.apply_layer(context, dest, overlay=False)


def _read_dockerfile(context_dir: Path, name: str) -> str:
    clean = posixpath.normpath("/" + name).lstrip("/")
    path = context_dir / clean
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise BuildFailed(f"Cannot locate specified Dockerfile: {name}") from None
    if not stat.S_ISREG(st.st_mode):
        raise BuildFailed(f"Cannot locate specified Dockerfile: {name}")
    return path.read_text(errors="replace")


def _resolve_in(root: Path, rel: str) -> Path:
    """``rel`` inside ``root`` with no symlink followed out of it (the context is untrusted)."""
    clean = posixpath.normpath("/" + rel).lstrip("/")
    path = root / clean if clean else root
    real = os.path.realpath(path)
    if real != str(root) and not real.startswith(str(root) + "/"):
        raise BuildFailed(f"forbidden path outside the build context: {rel} ()")
    return Path(real)


def _copy_tar(root: Path, sources: list[str], dest_is_dir: bool, dest: str, out: Path, is_add: bool,
              chown: str | None) -> None:
    """A tar of the sources laid out at ``dest`` (absolute paths, no leading slash), owned by root or --chown."""
    uid = gid = 0
    if chown:
        user, _, group = chown.partition(":")
        if not user.isdigit() or (group and not group.isdigit()):
            raise BuildFailed(f"--chown={chown}: only numeric user and group ids are supported")
        uid, gid = int(user), int(group or user)
    root = Path(os.path.realpath(root))
    entries: list[tuple[Path, str]] = []  # (file in the context, path in the image)
    for source in sources:
        if is_add and (source.startswith("http://") or source.startswith("https://")):
            raise BuildFailed(f"ADD of a URL is not supported by aiodock's builder: {source}")
        if posixpath.normpath(source).startswith("../") or posixpath.normpath(source) == "..":
            raise BuildFailed(f"COPY failed: forbidden path outside the build context: {source} ()")
        pattern = posixpath.normpath("/" + source).lstrip("/")
        if any(c in pattern for c in "*?["):
            matches = sorted(p for p in _walk_names(root) if fnmatch.fnmatchcase(p, pattern))
            if not matches:
                raise BuildFailed("COPY failed: no source files were specified")
        else:
            matches = [pattern]
        for match in matches:
            path = _resolve_in(root, match)
            if not path.exists():
                raise BuildFailed(f"COPY failed: file not found in build context or excluded by .dockerignore: "
                                  f"stat {source}: file does not exist")
            if path.is_dir():
                entries.append((path, dest))
            else:
                target = posixpath.join(dest, posixpath.basename(match)) if dest_is_dir else dest
                entries.append((path, target))
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for path, target in entries:
            if is_add and path.is_file() and _is_archive(path):
                _add_archive(tf, path, dest if dest_is_dir else target)  # extracted into the directory
                continue
            _add_path(tf, path, target.lstrip("/"), uid, gid, root)


def _walk_names(root: Path) -> list[str]:
    names = []
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            names.append(os.path.relpath(os.path.join(directory, name), root))
    return names


def _add_path(tf: tarfile.TarFile, path: Path, arcname: str, uid: int, gid: int, root: Path) -> None:
    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info
    if path.is_dir():
        for directory, dirs, files in os.walk(path):
            dirs.sort()
            rel = os.path.relpath(directory, path)
            base = arcname if rel == "." else posixpath.join(arcname, rel)
            if rel != ".":
                tf.add(directory, base, recursive=False, filter=owned)
            for name in sorted(files):
                full = os.path.join(directory, name)
                if os.path.islink(full):
                    target = os.readlink(full)
                    info = owned(tarfile.TarInfo(posixpath.join(base, name)))
                    info.type, info.linkname = tarfile.SYMTYPE, target
                    tf.addfile(info)
                else:
                    tf.add(full, posixpath.join(base, name), recursive=False, filter=owned)
    else:
        tf.add(str(path), arcname, recursive=False, filter=owned)


def _is_archive(path: Path) -> bool:
    """A tar archive, plain or compressed (ADD unpacks it; any other file is copied as it is)."""
    try:
        with open(path, "rb") as raw, layers.decompressed(raw) as plain:
            head = plain.read(512)
    except (OSError, EOFError, ValueError):
        return False
    return len(head) >= 262 and head[257:262] == b"ustar"


def _add_archive(tf: tarfile.TarFile, path: Path, dest_dir: str) -> None:
    """ADD of a local tar archive (plain, gzip, bzip2, xz, zstd): its entries, extracted at ``dest_dir``."""
    with open(path, "rb") as raw, layers.decompressed(raw) as plain, \
            tarfile.open(fileobj=plain, mode="r|") as src:
        for member in src:
            name = posixpath.normpath("/" + member.name).lstrip("/")
            if not name or name == ".":
                continue
            member.name = posixpath.join(dest_dir.lstrip("/"), name)
            if member.islnk():
                member.linkname = posixpath.join(dest_dir.lstrip("/"),
                                                 posixpath.normpath("/" + member.linkname).lstrip("/"))
            tf.addfile(member, src.extractfile(member) if member.isreg() else None)


def _ensure_dirs(root_path: str, tar_path: Path) -> None:
    """Create, inside the container's root, the missing parent directories of what the tar will write."""
    parents: set[str] = set()
    with tarfile.open(tar_path, "r") as tf:
        for member in tf.getmembers():
            parent = posixpath.dirname("/" + member.name.rstrip("/"))
            if parent and parent != "/":
                parents.add(parent)
    with Root(root_path) as root:
        for parent in sorted(parents, key=len):
            fd, _ = root.resolve(parent, create_dirs=True)
            os.close(fd)

