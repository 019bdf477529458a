"""``aiodock``: a docker-CLI-compatible command line for the aiodock daemon (console script ``aiodock``).

The Engine API client is async (aiohttp over the unix socket) so long streams (logs -f, attach, save/load)
never block; each invocation runs one ``asyncio.run``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys

from aiodock import __version__
from aiodock.cli.base import (
    CliExit,
    Command,
    Context,
    Parser,
    UsageError,
    daemon_error,
    err,
    out,
    split_at_first_positional,
)
from aiodock.client import ClientError
from aiodock.config import DEFAULT_HOST

# name -> module under aiodock.cli.commands (imported lazily: `aiodock daemon` must not load the client)
COMMAND_MODULES: dict[str, str] = {
    "run": "run",
    "ps": "ps",
    "logs": "logs",
    "stop": "stop",
    "kill": "kill",
    "restart": "restart",
    "rm": "rm",
    "wait": "wait",
    "inspect": "inspect",
    "images": "images",
    "import": "import_",
    "load": "load",
    "save": "save",
    "rmi": "rmi",
    "tag": "tag",
    "version": "version",
    "info": "info",
    "ctr": "ctr",
}

SUMMARIES: dict[str, str] = {
    "daemon": "Run the aiodock daemon (same flags as aiodockd)",
    "run": "Create and run a new container from an image",
    "ps": "List containers",
    "logs": "Fetch the logs of a container",
    "stop": "Stop one or more running containers",
    "kill": "Kill one or more running containers",
    "restart": "Restart one or more containers",
    "rm": "Remove one or more containers",
    "wait": "Block until one or more containers stop, then print their exit codes",
    "inspect": "Return low-level information on containers or images",
    "images": "List images",
    "import": "Import the contents from a tarball to create a filesystem image",
    "load": "Load an image from a tar archive or STDIN",
    "save": "Save one or more images to a tar archive (streamed to STDOUT by default)",
    "rmi": "Remove one or more images",
    "tag": "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
    "version": "Show the aiodock version information",
    "info": "Display system-wide information",
    "ctr": "Talk to the daemon's containerd-compatible gRPC API (namespaces, containers, tasks)",
}


def _epilog() -> str:
    lines = ["Commands:"]
    lines += [f"  {name:<10}{summary}" for name, summary in SUMMARIES.items()]
    lines += ["", "Run 'aiodock COMMAND --help' for more information on a command."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="aiodock",
        usage="aiodock [OPTIONS] COMMAND",
        description="A Docker-compatible container engine: CLI for the aiodock daemon",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-H", "--host", metavar="HOST",
                        help=f"Daemon socket to connect to: unix:///path or tcp://host:port "
                             f"(default: $DOCKER_HOST, else {DEFAULT_HOST})")
    parser.add_argument("-D", "--debug", action="store_true", help="Show tracebacks of unexpected errors")
    parser.add_argument("-v", "--version", action="store_true", help="Print version information and quit")
    parser.add_argument("command", nargs="?", metavar="COMMAND", help=argparse.SUPPRESS)
    return parser


def load_command(name: str) -> Command:
    module = importlib.import_module(f"aiodock.cli.commands.{COMMAND_MODULES[name]}")
    command: Command = module.COMMAND
    return command


async def _execute(ctx: Context, command: Command, args: argparse.Namespace) -> int:
    try:
        return await command.run(ctx, args)
    finally:
        await ctx.close()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    head, rest = split_at_first_positional(parser, argv)
    try:
        opts = parser.parse_args(head)
    except UsageError as exc:
        err(f"aiodock: {exc}")
        return 1
    if opts.version:
        out(f"aiodock version {__version__}")
        return 0
    if opts.command is None:
        parser.print_help()
        return 0
    if opts.command == "daemon":
        from aiodock.daemon.main import main as daemon_main  # lazy: the daemon's dependencies are heavy

        return daemon_main(rest)
    if opts.command not in COMMAND_MODULES:
        err(f"aiodock: '{opts.command}' is not an aiodock command.\nSee 'aiodock --help'")
        return 1

    command = load_command(opts.command)
    sub = command.build(f"aiodock {command.name}")
    try:
        if command.split_positional:
            sub_head, sub_rest = split_at_first_positional(sub, rest)
            args = sub.parse_args(sub_head)
            args.args = sub_rest
        else:
            args = sub.parse_args(rest)
    except UsageError as exc:
        err(f"aiodock {command.name}: {exc}")
        return 1

    ctx = Context(host=opts.host, debug=opts.debug)
    try:
        return asyncio.run(_execute(ctx, command, args))
    except CliExit as exc:
        return exc.code
    except ClientError as exc:
        err(daemon_error(exc))
        return 1
    except UsageError as exc:
        err(f"aiodock {command.name}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except (ValueError, OSError) as exc:
        if opts.debug:
            raise
        err(f"Error: {exc}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
