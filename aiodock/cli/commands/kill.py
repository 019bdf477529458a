"""``aiodock kill``: send a signal (default SIGKILL) to running containers."""

from __future__ import annotations

import argparse

from aiodock.cli.base import Command, Context, Parser, for_each


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS] CONTAINER [CONTAINER...]",
               description="Kill one or more running containers")
    p.add_argument("-s", "--signal", metavar="string", help='Signal to send to the container (default "KILL")')
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    return p


async def run(ctx: Context, args: argparse.Namespace) -> int:
    return await for_each(args.containers, lambda ref: ctx.client.container_kill(ref, args.signal))


COMMAND = Command("kill", "Kill one or more running containers", build, run)
