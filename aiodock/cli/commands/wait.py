"""``aiodock wait``: block until containers stop, print each exit code."""

from __future__ import annotations

import argparse

from aiodock.cli.base import Command, Context, Parser, for_each, out


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} CONTAINER [CONTAINER...]",
               description="Block until one or more containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    return p


async def run(ctx: Context, args: argparse.Namespace) -> int:
    async def wait_one(ref: str) -> None:
        result = await ctx.client.container_wait(ref)
        out(str(result.get("StatusCode", "")))

    return await for_each(args.containers, wait_one, echo=False)


COMMAND = Command("wait", "Block until one or more containers stop, then print their exit codes", build, run)
