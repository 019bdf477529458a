"""``aiodock stop``: stop running containers (SIGTERM, then SIGKILL after the grace period)."""

from __future__ import annotations

import argparse

from aiodock.cli.base import Command, Context, Parser, for_each


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS] CONTAINER [CONTAINER...]",
               description="Stop one or more running containers")
    p.add_argument("-s", "--signal", metavar="string", help="Signal to send to the container")
    p.add_argument("-t", "--timeout", "--time", type=int, metavar="int",
                   help="Seconds to wait before killing the container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    return p


async def run(ctx: Context, args: argparse.Namespace) -> int:
    return await for_each(args.containers, lambda ref: ctx.client.container_stop(ref, args.timeout, args.signal))


COMMAND = Command("stop", "Stop one or more running containers", build, run)
