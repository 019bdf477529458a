"""``aiodock info``: system-wide information in ``docker info``'s layout (the fields aiodock reports)."""

from __future__ import annotations

import argparse
from typing import Any

from aiodock import __version__
from aiodock.cli.base import Command, Context, Parser, daemon_error, err, out
from aiodock.cli.fmt import bytes_size
from aiodock.cli.gotemplate import render
from aiodock.client import ClientError


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS]", description="Display system-wide information")
    p.add_argument("-f", "--format", metavar="string", help="Format output using a Go template ({{.ServerVersion}})")
    return p


def _kv(lines: list[str], indent: str, key: str, value: Any) -> None:
    if value is None or value == "":
        return
    if isinstance(value, bool):
        value = str(value).lower()
    lines.append(f"{indent}{key}: {value}")


def server_lines(i: dict[str, Any]) -> list[str]:
    lines = ["Server:"]
    _kv(lines, " ", "Containers", i.get("Containers", 0))
    _kv(lines, "  ", "Running", i.get("ContainersRunning", 0))
    _kv(lines, "  ", "Paused", i.get("ContainersPaused", 0))
    _kv(lines, "  ", "Stopped", i.get("ContainersStopped", 0))
    _kv(lines, " ", "Images", i.get("Images", 0))
    _kv(lines, " ", "Server Version", i.get("ServerVersion"))
    _kv(lines, " ", "Storage Driver", i.get("Driver"))
    for pair in i.get("DriverStatus") or []:
        if isinstance(pair, list) and len(pair) == 2:
            _kv(lines, "  ", pair[0], pair[1])
    _kv(lines, " ", "Logging Driver", i.get("LoggingDriver"))
    _kv(lines, " ", "Cgroup Driver", i.get("CgroupDriver"))
    _kv(lines, " ", "Cgroup Version", i.get("CgroupVersion"))
    runtimes = i.get("Runtimes") or {}
    if runtimes:
        _kv(lines, " ", "Runtimes", " ".join(sorted(runtimes)))
    _kv(lines, " ", "Default Runtime", i.get("DefaultRuntime"))
    for name, key in (("containerd version", "ContainerdCommit"), ("runc version", "RuncCommit")):
        commit = i.get(key) or {}
        if isinstance(commit, dict) and commit.get("ID"):
            _kv(lines, " ", name, commit["ID"])
    _kv(lines, " ", "Kernel Version", i.get("KernelVersion"))
    _kv(lines, " ", "Operating System", i.get("OperatingSystem"))
    _kv(lines, " ", "OSType", i.get("OSType"))
    _kv(lines, " ", "Architecture", i.get("Architecture"))
    _kv(lines, " ", "CPUs", i.get("NCPU"))
    if i.get("MemTotal"):
        _kv(lines, " ", "Total Memory", bytes_size(float(i["MemTotal"])))
    _kv(lines, " ", "Name", i.get("Name"))
    _kv(lines, " ", "ID", i.get("ID"))
    _kv(lines, " ", "Docker Root Dir", i.get("DockerRootDir"))
    _kv(lines, " ", "Debug Mode", bool(i.get("Debug", False)))
    _kv(lines, " ", "Experimental", bool(i.get("ExperimentalBuild", False)))
    labels = i.get("Labels") or []
    if labels:
        lines.append(" Labels:")
        lines += [f"  {label}" for label in labels]
    _kv(lines, " ", "Live Restore Enabled", bool(i.get("LiveRestoreEnabled", False)))
    warnings = i.get("Warnings") or []
    if warnings:
        lines.append("")
        lines += list(warnings)
    return lines


async def run(ctx: Context, args: argparse.Namespace) -> int:
    try:
        info: dict[str, Any] | None = await ctx.client.info()
        error: ClientError | None = None
    except ClientError as exc:
        info, error = None, exc
    if args.format:
        if info is not None:
            out(render(args.format, info))
    else:
        lines = ["Client:", f" Version:    {__version__}", " Context:    default", " Debug Mode: false", ""]
        if info is not None:
            lines += server_lines(info)
        out("\n".join(lines))
    if error is not None:
        err(daemon_error(error))
        return 1
    return 0


COMMAND = Command("info", "Display system-wide information", build, run)
