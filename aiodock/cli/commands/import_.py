"""``aiodock import``: create a filesystem image from a tarball (file, URL or ``-`` for stdin)."""

from __future__ import annotations

import argparse

from aiodock.cli.base import Command, Context, Parser
from aiodock.cli.fmt import split_repo_tag
from aiodock.cli.streams import open_source, print_messages


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
               description="Import the contents from a tarball to create a filesystem image")
    p.add_argument("-c", "--change", action="append", default=[], metavar="list",
                   help='Apply Dockerfile instruction to the created image (e.g. "CMD [\\"sh\\"]", "ENV A=b")')
    p.add_argument("-m", "--message", metavar="string", help="Set commit message for imported image")
    p.add_argument("source", metavar="file|URL|-")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    return p


async def run(ctx: Context, args: argparse.Namespace) -> int:
    repo, tag = split_repo_tag(args.reference) if args.reference else (None, None)
    is_url = args.source.startswith(("http://", "https://"))
    await ctx.client.ping()
    body = None if is_url else open_source(args.source)
    messages = ctx.client.image_import(
        body, fromSrc=args.source if is_url else "-", repo=repo, tag=tag or None,
        message=args.message, changes=args.change,
    )
    await print_messages(messages)
    return 0


COMMAND = Command("import", "Import the contents from a tarball to create a filesystem image", build, run)
