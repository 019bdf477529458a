"""``aiodock rm``: remove containers."""

from __future__ import annotations

import argparse

from aiodock.cli.base import Command, Context, Parser, for_each


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS] CONTAINER [CONTAINER...]",
               description="Remove one or more containers")
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of a running container (uses SIGKILL)")
    p.add_argument("-v", "--volumes", action="store_true", help="Remove anonymous volumes associated with the container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    return p


async def run(ctx: Context, args: argparse.Namespace) -> int:
    return await for_each(args.containers, lambda ref: ctx.client.container_remove(ref, args.force, args.volumes))


COMMAND = Command("rm", "Remove one or more containers", build, run)
