"""``aiodock run``: create, attach (non-TTY), wait, start, stream output, exit with the container's code."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from aiodock.cli.base import Command, Context, Parser, daemon_error, err, out, write_stderr, write_stdout
from aiodock.cli.fmt import ram_in_bytes, split_repo_tag
from aiodock.client import ClientError, DaemonUnreachable, DockerClient
from aiodock.client.stream import STDERR

WAIT_HEADERS_GRACE = 2.0  # seconds to wait for /wait's early 200 headers before starting anyway


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, add_help=False, usage=f"{prog} [OPTIONS] IMAGE [COMMAND] [ARG...]",
               description="Create and run a new container from an image (no TTY and no stdin: -i/-t are "
                           "not supported)")
    p.add_argument("--help", action="help", help="Print usage")
    p.add_argument("-d", "--detach", action="store_true", help="Run container in background and print container ID")
    p.add_argument("--rm", action="store_true", help="Automatically remove the container when it exits")
    p.add_argument("--name", help="Assign a name to the container")
    p.add_argument("-e", "--env", action="append", default=[], metavar="list",
                   help="Set environment variables (VAR=value, or VAR to copy it from this environment)")
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    p.add_argument("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="list",
                   help="Bind mount a volume (/host/path:/container/path[:ro])")
    p.add_argument("--entrypoint", help="Overwrite the default ENTRYPOINT of the image")
    p.add_argument("-l", "--label", action="append", default=[], metavar="list", help="Set meta data on a container")
    p.add_argument("--network", "--net", default="default", metavar="network",
                   help="Connect a container to a network: host, none or default")
    p.add_argument("-h", "--hostname", help="Container host name")
    p.add_argument("-m", "--memory", help="Memory limit (e.g. 512m, 1g)")
    p.add_argument("--cpus", type=float, help="Number of CPUs")
    p.add_argument("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
    p.add_argument("--read-only", action="store_true", help="Mount the container's root filesystem as read only")
    p.add_argument("--privileged", action="store_true", help="Give extended privileges to this container")
    p.add_argument("--cap-add", action="append", default=[], metavar="list", help="Add Linux capabilities")
    p.add_argument("--cap-drop", action="append", default=[], metavar="list", help="Drop Linux capabilities")
    p.add_argument("--security-opt", action="append", default=[], metavar="list",
                   help="Security options (no-new-privileges)")
    p.add_argument("--sig-proxy", default="true", choices=["true", "false"],
                   help="Proxy received signals to the process (default true)")
    p.add_argument("image", metavar="IMAGE")
    return p


def _env(items: list[str]) -> list[str]:
    result = []
    for item in items:
        if "=" in item:
            result.append(item)
        elif item in os.environ:
            result.append(f"{item}={os.environ[item]}")
    return result


def _labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, _, value = item.partition("=")
        labels[key] = value
    return labels


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    host: dict[str, Any] = {
        "AutoRemove": bool(args.rm),
        "Binds": list(args.volume) or None,
        "NetworkMode": args.network,
        "ReadonlyRootfs": bool(args.read_only),
        "Privileged": bool(args.privileged),
        "CapAdd": list(args.cap_add) or None,
        "CapDrop": list(args.cap_drop) or None,
        "SecurityOpt": list(args.security_opt) or None,
    }
    if args.memory:
        host["Memory"] = ram_in_bytes(args.memory)
    if args.cpus is not None:
        host["NanoCpus"] = int(round(args.cpus * 1e9))
    if args.pids_limit is not None:
        host["PidsLimit"] = args.pids_limit
    config: dict[str, Any] = {
        "Image": args.image,
        "Cmd": list(args.args) or None,
        "Env": _env(args.env),
        "Labels": _labels(args.label),
        "AttachStdin": False,
        "AttachStdout": not args.detach,
        "AttachStderr": not args.detach,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "HostConfig": host,
    }
    if args.workdir:
        config["WorkingDir"] = args.workdir
    if args.user:
        config["User"] = args.user
    if args.hostname:
        config["Hostname"] = args.hostname
    if args.entrypoint is not None:
        config["Entrypoint"] = [args.entrypoint] if args.entrypoint else [""]
    return config


def _fail(exc: ClientError, code: int = 125) -> int:
    err(f"aiodock: {daemon_error(exc)}\n\nRun 'aiodock run --help' for more information")
    return code


def start_error_code(message: str) -> int:
    """docker run's mapping of start failures: 127 command not found, 126 cannot invoke, else 125."""
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


async def _create(client: DockerClient, config: dict[str, Any], name: str | None) -> dict[str, Any]:
    try:
        return await client.container_create(config, name)
    except ClientError as exc:
        if exc.status != 404 or "image" not in exc.message.lower():
            raise
    image = config["Image"]
    if not split_repo_tag(image)[1] and "@" not in image:
        image += ":latest"
    err(f"Unable to find image '{image}' locally")
    async for msg in client.image_pull(config["Image"]):
        if msg.get("error"):
            raise ClientError(500, str(msg["error"]))
    return await client.container_create(config, name)


async def _pump(stream: Any) -> None:
    async for kind, data in stream.frames():
        if kind == STDERR:
            await write_stderr(data)
        else:
            await write_stdout(data)


def _proxy_signals(client: DockerClient, cid: str) -> list[signal.Signals]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        def forward(s: signal.Signals = sig) -> None:
            loop.create_task(client.container_kill(cid, str(int(s))))
        try:
            loop.add_signal_handler(sig, forward)
            installed.append(sig)
        except (ValueError, RuntimeError, NotImplementedError):
            pass
    return installed


async def run(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client
    try:
        config = build_config(args)
    except ValueError as exc:
        err(f"aiodock: {exc}\n\nRun 'aiodock run --help' for more information")
        return 125
    try:
        await client.ping()
        created = await _create(client, config, args.name)
    except DaemonUnreachable as exc:
        err(f"aiodock: {exc.message}")
        return 125
    except ClientError as exc:
        return _fail(exc)
    cid: str = created["Id"]
    for warning in created.get("Warnings") or []:
        err(f"WARNING: {warning}")

    if args.detach:
        try:
            await client.container_start(cid)
        except ClientError as exc:
            return _fail(exc, start_error_code(exc.message))
        out(cid)
        return 0
    return await _run_attached(client, cid, args)


async def _run_attached(client: DockerClient, cid: str, args: argparse.Namespace) -> int:
    condition = "removed" if args.rm else "next-exit"
    async with client.attach(cid, stdout=True, stderr=True) as stream:
        waiter = asyncio.create_task(client.container_wait_start(cid, condition))
        await asyncio.wait({waiter}, timeout=WAIT_HEADERS_GRACE)
        pump = asyncio.create_task(_pump(stream))
        try:
            await client.container_start(cid)
        except ClientError as exc:
            pump.cancel()
            if args.rm:  # the daemon removes an AutoRemove container whose start failed
                try:
                    await asyncio.wait_for(waiter, 10)
                except (TimeoutError, ClientError):
                    pass
            waiter.cancel()
            return _fail(exc, start_error_code(exc.message))
        signals = _proxy_signals(client, cid) if args.sig_proxy == "true" else []
        try:
            try:
                await pump
            except (RuntimeError, ConnectionError) as exc:
                err(f"aiodock: error attaching: {exc}")
            try:
                result = await client.wait_result(await waiter)
            except ClientError as exc:
                return _fail(exc)
        finally:
            loop = asyncio.get_running_loop()
            for sig in signals:
                loop.remove_signal_handler(sig)
    sys.stdout.flush()
    error = (result.get("Error") or {}).get("Message")
    if error:
        err(f"aiodock: Error response from daemon: {error}")
        return 125
    return int(result.get("StatusCode", 0))


COMMAND = Command("run", "Create and run a new container from an image", build, run, split_positional=True)
