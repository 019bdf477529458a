"""``aiodock ps``: the docker CLI's container table."""

from __future__ import annotations

import argparse
from typing import Any

from aiodock.cli.base import Command, Context, Parser, out
from aiodock.cli.fmt import ellipsis, format_ports, go_quote, human_size, since, truncate_id
from aiodock.cli.formatting import print_formatted
from aiodock.cli.tabwriter import docker_table
from aiodock.client.docker import filters_param


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS]", description="List containers")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="filter",
                   help="Filter output based on conditions provided (e.g. status=exited, name=foo, label=k=v)")
    p.add_argument("-n", "--last", type=int, default=-1, metavar="int",
                   help="Show n last created containers (includes all states)")
    p.add_argument("-l", "--latest", action="store_true", help="Show the latest created container (includes all states)")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument("--format", metavar="string", help="Format output using a Go template ({{.ID}} {{.Names}} ...)")
    return p


def _names(c: dict[str, Any], trunc: bool) -> str:
    names = [n[1:] if n.startswith("/") else n for n in c.get("Names") or []]
    if trunc:
        names = [n for n in names if "/" not in n][:1] or names[:1]
    return ",".join(names)


def _image(c: dict[str, Any], trunc: bool) -> str:
    image = str(c.get("Image", ""))
    if trunc:
        if image.startswith("sha256:"):
            return truncate_id(image)
        image = image.split("@", 1)[0] if "@" in image and ":" in image.split("@", 1)[0] else image
    return image


HEADERS = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED", "Status": "STATUS", "State": "STATE", "Ports": "PORTS", "Names": "NAMES",
    "Size": "SIZE", "Labels": "LABELS", "Networks": "NETWORKS",
}


def row(c: dict[str, Any], trunc: bool) -> dict[str, str]:
    command = str(c.get("Command", ""))
    size = ""
    if "SizeRw" in c or "SizeRootFs" in c:
        size = f"{human_size(c.get('SizeRw') or 0)} (virtual {human_size(c.get('SizeRootFs') or 0)})"
    labels = c.get("Labels") or {}
    return {
        "ID": truncate_id(c["Id"]) if trunc else c["Id"],
        "Image": _image(c, trunc),
        "Command": go_quote(ellipsis(command, 20) if trunc else command),
        "CreatedAt": str(c.get("Created", "")),
        "RunningFor": since(float(c.get("Created", 0))),
        "Status": str(c.get("Status", "")),
        "State": str(c.get("State", "")),
        "Ports": format_ports(c.get("Ports")),
        "Names": _names(c, trunc),
        "Size": size,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Networks": ",".join(sorted(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())),
    }


async def run(ctx: Context, args: argparse.Namespace) -> int:
    limit = 1 if args.latest else args.last
    containers = await ctx.client.containers(
        all=args.all or limit > 0 or None, limit=limit if limit > 0 else None, size=args.size or None,
        filters=filters_param(args.filter),
    )
    trunc = not args.no_trunc
    if args.quiet:
        for c in containers:
            out(truncate_id(c["Id"]) if trunc else c["Id"])
        return 0
    rows = [row(c, trunc) for c in containers]
    if args.format:
        return print_formatted(args.format, rows, HEADERS)
    header = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    keys = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
    if args.size:
        header.append("SIZE")
        keys.append("Size")
    table = [header] + [[r[k] for k in keys] for r in rows]
    out(docker_table(table), end="")
    return 0


COMMAND = Command("ps", "List containers", build, run)
