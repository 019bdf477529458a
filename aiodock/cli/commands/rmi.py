"""``aiodock rmi``: untag and delete images."""

from __future__ import annotations

import argparse

from aiodock.cli.base import Command, Context, Parser, for_each, out


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS] IMAGE [IMAGE...]", description="Remove one or more images")
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    return p


async def run(ctx: Context, args: argparse.Namespace) -> int:
    async def remove(ref: str) -> None:
        for item in await ctx.client.image_remove(ref, args.force, args.no_prune):
            if item.get("Untagged"):
                out(f"Untagged: {item['Untagged']}")
            if item.get("Deleted"):
                out(f"Deleted: {item['Deleted']}")

    return await for_each(args.images, remove, echo=False)


COMMAND = Command("rmi", "Remove one or more images", build, run)
