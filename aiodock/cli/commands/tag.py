"""``aiodock tag``: add a name to an image."""

from __future__ import annotations

import argparse

from aiodock.cli.base import Command, Context, Parser
from aiodock.cli.fmt import split_repo_tag


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
               description="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    return p


async def run(ctx: Context, args: argparse.Namespace) -> int:
    repo, tag = split_repo_tag(args.target)
    await ctx.client.image_tag(args.source, repo, tag or "latest")
    return 0


COMMAND = Command("tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", build, run)
