"""``aiodock version``: client and server sections laid out like ``docker version``."""

from __future__ import annotations

import argparse
import platform
import sys
from typing import Any

from aiodock import __version__
from aiodock.cli.base import Command, Context, Parser, daemon_error, err, out
from aiodock.cli.gotemplate import render
from aiodock.client import ClientError
from aiodock.client.docker import MAX_API_VERSION

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS]", description="Show the aiodock version information")
    p.add_argument("-f", "--format", metavar="string", help="Format output using a Go template ({{.Server.Version}})")
    return p


def client_info(api_version: str | None) -> dict[str, Any]:
    return {
        "Version": __version__,
        "ApiVersion": api_version or MAX_API_VERSION,
        "DefaultAPIVersion": MAX_API_VERSION,
        "GoVersion": f"python{platform.python_version()}",
        "GitCommit": "-",
        "BuildTime": "-",
        "Os": sys.platform,
        "Arch": _ARCH.get(platform.machine(), platform.machine()),
        "Context": "default",
    }


def _client_lines(c: dict[str, Any]) -> list[str]:
    return [
        "Client:",
        f" Version:           {c['Version']}",
        f" API version:       {c['ApiVersion']}",
        f" Go version:        {c['GoVersion']}",
        f" Git commit:        {c['GitCommit']}",
        f" Built:             {c['BuildTime']}",
        f" OS/Arch:           {c['Os']}/{c['Arch']}",
        f" Context:           {c['Context']}",
    ]


def _server_lines(s: dict[str, Any]) -> list[str]:
    platform_name = (s.get("Platform") or {}).get("Name", "")
    lines = ["Server:" + (f" {platform_name}" if platform_name else "")]
    components = s.get("Components") or [{"Name": "Engine", "Version": s.get("Version", ""), "Details": {
        "ApiVersion": s.get("ApiVersion", ""), "MinAPIVersion": s.get("MinAPIVersion", ""),
        "GoVersion": s.get("GoVersion", ""), "GitCommit": s.get("GitCommit", ""),
        "BuildTime": s.get("BuildTime", ""), "Os": s.get("Os", ""), "Arch": s.get("Arch", ""),
        "Experimental": str(s.get("Experimental", False)).lower()}}]
    for comp in components:
        details = comp.get("Details") or {}
        lines.append(f" {comp.get('Name', '')}:")
        if comp.get("Name") == "Engine":
            lines += [
                f"  Version:          {comp.get('Version', '')}",
                f"  API version:      {details.get('ApiVersion', '')} (minimum version "
                f"{details.get('MinAPIVersion', '')})",
                f"  Go version:       {details.get('GoVersion', '')}",
                f"  Git commit:       {details.get('GitCommit', '')}",
                f"  Built:            {details.get('BuildTime', '')}",
                f"  OS/Arch:          {details.get('Os', '')}/{details.get('Arch', '')}",
                f"  Experimental:     {str(details.get('Experimental', 'false')).lower()}",
            ]
        else:
            lines.append(f"  Version:          {comp.get('Version', '')}")
            for key in sorted(details):
                lines.append(f"  {key + ':':<18}{details[key]}")
    return lines


async def run(ctx: Context, args: argparse.Namespace) -> int:
    server: dict[str, Any] | None = None
    error: ClientError | None = None
    try:
        server = await ctx.client.version()
    except ClientError as exc:
        error = exc
    client = client_info(ctx.client.api_version)
    if args.format:
        out(render(args.format, {"Client": client, "Server": server}))
    else:
        lines = _client_lines(client)
        if server is not None:
            lines += [""] + _server_lines(server)
        out("\n".join(lines))
    if error is not None:
        err(daemon_error(error))
        return 1
    return 0


COMMAND = Command("version", "Show the aiodock version information", build, run)
