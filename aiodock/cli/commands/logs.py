"""``aiodock logs``: stream a container's logs, demultiplexed to stdout/stderr."""

from __future__ import annotations

import argparse

from aiodock.cli.base import Command, Context, Parser, write_stderr, write_stdout
from aiodock.cli.timeparse import parse_timestamp
from aiodock.client.stream import STDERR


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS] CONTAINER", description="Fetch the logs of a container")
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("-n", "--tail", default="all", metavar="string",
                   help='Number of lines to show from the end of the logs (default "all")')
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("--since", metavar="string",
                   help="Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)")
    p.add_argument("--until", metavar="string",
                   help="Show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)")
    p.add_argument("container", metavar="CONTAINER")
    return p


async def run(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client
    info = await client.container_inspect(args.container)
    tty = bool((info.get("Config") or {}).get("Tty"))
    frames = client.container_logs(
        args.container, tty=tty, stdout=True, stderr=True, follow=args.follow or None,
        timestamps=args.timestamps or None, tail=args.tail,
        since=parse_timestamp(args.since) if args.since else None,
        until=parse_timestamp(args.until) if args.until else None,
    )
    async for kind, data in frames:
        if kind == STDERR:
            await write_stderr(data)
        else:
            await write_stdout(data)
    return 0


COMMAND = Command("logs", "Fetch the logs of a container", build, run)
