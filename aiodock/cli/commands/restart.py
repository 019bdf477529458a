"""``aiodock restart``: stop (with a grace period) and start containers again."""

from __future__ import annotations

import argparse

from aiodock.cli.base import Command, Context, Parser, for_each


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS] CONTAINER [CONTAINER...]",
               description="Restart one or more containers")
    p.add_argument("-s", "--signal", metavar="string", help="Signal to send to the container")
    p.add_argument("-t", "--timeout", "--time", type=int, metavar="int",
                   help="Seconds to wait before killing the container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    return p


async def run(ctx: Context, args: argparse.Namespace) -> int:
    return await for_each(args.containers, lambda ref: ctx.client.container_restart(ref, args.timeout, args.signal))


COMMAND = Command("restart", "Restart one or more containers", build, run)
