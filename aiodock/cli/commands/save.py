"""``aiodock save``: stream a docker-save tarball of images to ``-o FILE`` or a redirected stdout."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from typing import BinaryIO

from aiodock.cli.base import Command, Context, Parser, UsageError, write_stdout


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [OPTIONS] IMAGE [IMAGE...]",
               description="Save one or more images to a tar archive (streamed to STDOUT by default)")
    p.add_argument("-o", "--output", metavar="string", help="Write to a file, instead of STDOUT")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    return p


async def run(ctx: Context, args: argparse.Namespace) -> int:
    if not args.output:
        if sys.stdout.isatty():
            raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        async for chunk in ctx.client.image_save(args.images):
            await write_stdout(chunk)
        return 0
    target = os.path.abspath(args.output)
    fd, tmp = await asyncio.to_thread(tempfile.mkstemp, prefix=".aiodock-save-", dir=os.path.dirname(target))
    handle: BinaryIO = os.fdopen(fd, "wb")
    try:
        async for chunk in ctx.client.image_save(args.images):
            await asyncio.to_thread(handle.write, chunk)
        await asyncio.to_thread(handle.close)
        await asyncio.to_thread(os.chmod, tmp, 0o644)
        await asyncio.to_thread(os.replace, tmp, target)
    except BaseException:
        handle.close()
        if await asyncio.to_thread(os.path.exists, tmp):
            await asyncio.to_thread(os.unlink, tmp)
        raise
    return 0


COMMAND = Command("save", "Save one or more images to a tar archive (streamed to STDOUT by default)", build, run)
