"""``aiodock load``: load images from a docker-save tarball (``-i FILE`` or stdin)."""

from __future__ import annotations

import argparse
import sys

from aiodock.cli.base import Command, Context, Parser, UsageError
from aiodock.cli.streams import open_source, print_messages


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS]", description="Load an image from a tar archive or STDIN")
    p.add_argument("-i", "--input", metavar="string", help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    return p


async def run(ctx: Context, args: argparse.Namespace) -> int:
    if args.input is None and sys.stdin.isatty():
        raise UsageError("requested load from stdin, but stdin is empty")
    await ctx.client.ping()
    await print_messages(ctx.client.image_load(open_source(args.input), quiet=args.quiet))
    return 0


COMMAND = Command("load", "Load an image from a tar archive or STDIN", build, run)
