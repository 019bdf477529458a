"""``aiodock images``: the docker CLI's image table."""

from __future__ import annotations

import argparse
from typing import Any

from aiodock.cli.base import Command, Context, Parser, out
from aiodock.cli.fmt import human_size, since, split_repo_tag, truncate_id
from aiodock.cli.formatting import print_formatted
from aiodock.cli.tabwriter import docker_table
from aiodock.client.docker import filters_param

HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED",
           "CreatedAt": "CREATED AT", "Size": "SIZE", "Digest": "DIGEST"}


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS] [REPOSITORY[:TAG]]", description="List images")
    p.add_argument("-a", "--all", action="store_true", help="Show all images (default hides intermediate images)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="filter",
                   help="Filter output based on conditions provided (dangling=true, label=k=v, reference=...)")
    p.add_argument("--format", metavar="string", help="Format output using a Go template")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    return p


def rows_of(image: dict[str, Any], trunc: bool) -> list[dict[str, str]]:
    ident = str(image.get("Id", ""))
    base = {
        "ID": truncate_id(ident) if trunc else ident,
        "CreatedSince": since(float(image.get("Created", 0))),
        "CreatedAt": str(image.get("Created", "")),
        "Size": human_size(float(image.get("Size", 0) or 0)),
        "Digest": "<none>",
    }
    tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
    if not tags:
        digests = image.get("RepoDigests") or []
        repo = digests[0].split("@", 1)[0] if digests else "<none>"
        return [{**base, "Repository": repo, "Tag": "<none>"}]
    rows = []
    for tag in tags:
        repo, tagname = split_repo_tag(tag)
        rows.append({**base, "Repository": repo, "Tag": tagname or "<none>"})
    return rows


async def run(ctx: Context, args: argparse.Namespace) -> int:
    filters = list(args.filter)
    if args.reference:
        filters.append(f"reference={args.reference}")
    images = await ctx.client.images(all=args.all or None, filters=filters_param(filters))
    images.sort(key=lambda i: int(i.get("Created", 0) or 0), reverse=True)
    trunc = not args.no_trunc
    if args.quiet:
        seen: set[str] = set()
        for image in images:
            ident = truncate_id(image["Id"]) if trunc else image["Id"]
            if ident not in seen:
                seen.add(ident)
                out(ident)
        return 0
    rows = [r for image in images for r in rows_of(image, trunc)]
    if args.format:
        return print_formatted(args.format, rows, HEADERS)
    keys = ["Repository", "Tag", "ID", "CreatedSince", "Size"]
    table = [[HEADERS[k] for k in keys]] + [[r[k] for k in keys] for r in rows]
    out(docker_table(table), end="")
    return 0


COMMAND = Command("images", "List images", build, run)
