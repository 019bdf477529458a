"""``aiodock inspect``: JSON of containers and images, or a Go-template ``--format`` per object."""

from __future__ import annotations

import argparse
import json
from typing import Any

from aiodock.cli.base import Command, Context, Parser, err, out
from aiodock.cli.gotemplate import TemplateError, render
from aiodock.client import ClientError, DaemonUnreachable


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS] NAME|ID [NAME|ID...]",
               description="Return low-level information on containers or images")
    p.add_argument("-f", "--format", metavar="string",
                   help="Format output using a Go template subset: {{.State.Status}}, {{json .Config}}, "
                        "{{index .Config.Labels \"k\"}}, {{join .Config.Cmd \" \"}}, {{upper .X}}")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes if the type is container")
    p.add_argument("--type", choices=["container", "image"], help="Only inspect objects of the given type")
    p.add_argument("names", nargs="+", metavar="NAME|ID")
    return p


async def _lookup(ctx: Context, ref: str, kind: str | None, size: bool) -> dict[str, Any] | None:
    kinds = [k for k in ("container", "image") if kind in (None, k)]
    for k in kinds:
        try:
            if k == "container":
                return await ctx.client.container_inspect(ref, size)
            return await ctx.client.image_inspect(ref)
        except ClientError as exc:
            if isinstance(exc, DaemonUnreachable) or exc.status != 404:
                raise
    return None


async def run(ctx: Context, args: argparse.Namespace) -> int:
    found: list[dict[str, Any]] = []
    missing: list[str] = []
    for ref in args.names:
        obj = await _lookup(ctx, ref, args.type, args.size)
        if obj is None:
            missing.append(ref)
        else:
            found.append(obj)
    status = 0
    if args.format:
        for obj in found:
            try:
                out(render(args.format, obj))
            except TemplateError as exc:
                err(f"template parsing error: {exc}")
                return 1
    else:
        out(json.dumps(found, indent=4, ensure_ascii=False))
    for ref in missing:
        kind = args.type or "object"
        err(f"Error: No such {kind}: {ref}")
        status = 1
    return status


COMMAND = Command("inspect", "Return low-level information on containers or images", build, run)
