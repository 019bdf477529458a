"""``aiodock ctr``: a few ``ctr`` commands over the daemon's containerd-compatible gRPC socket."""

from __future__ import annotations

import argparse
import os

from aiodock.cli.base import Command, Context, Parser, err, out
from aiodock.cli.tabwriter import TabWriter
from aiodock.client.ctr import DEFAULT_ADDRESS, ContainerdClient, CtrError


def build(prog: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, usage=f"{prog} [--address PATH] [-n NAMESPACE] COMMAND ls [-q]",
               description="Talk to the daemon's containerd-compatible gRPC API like containerd's ctr")
    p.add_argument("-a", "--address", default=os.environ.get("CONTAINERD_ADDRESS", DEFAULT_ADDRESS),
                   help=f"Address for the containerd gRPC socket (default {DEFAULT_ADDRESS}, $CONTAINERD_ADDRESS)")
    p.add_argument("-n", "--namespace", default=os.environ.get("CONTAINERD_NAMESPACE", "default"),
                   help='Namespace to use with commands (default "default", $CONTAINERD_NAMESPACE)')
    p.add_argument("--timeout", type=float, default=30.0, help="Per-call timeout in seconds (default 30)")
    groups = p.add_subparsers(dest="group", metavar="COMMAND", required=True, parser_class=Parser, prog=prog)
    for name, aliases, summary in (
        ("namespaces", ["namespace", "ns"], "Manage namespaces"),
        ("containers", ["container", "c"], "Manage containers"),
        ("tasks", ["task", "t"], "Manage tasks"),
    ):
        group = groups.add_parser(name, aliases=aliases, help=summary, description=summary)
        verbs = group.add_subparsers(dest="verb", metavar="COMMAND", required=True, parser_class=Parser,
                                     prog=f"{prog} {name}")
        ls = verbs.add_parser("list", aliases=["ls"], help=f"List {name}", description=f"List {name}")
        ls.add_argument("-q", "--quiet", action="store_true", help="Print only the name/id")
        if name == "containers":
            ls.add_argument("filters", nargs="*", metavar="FILTER", help="containerd filters, e.g. labels.app==x")
        ls.set_defaults(group_name=name)
    return p


def _table(minwidth: int, tabwidth: int, padding: int, lines: list[str]) -> str:
    tw = TabWriter(minwidth, tabwidth, padding)
    for line in lines:
        tw.write(line + "\n")
    return tw.render()


async def run(ctx: Context, args: argparse.Namespace) -> int:
    client = ContainerdClient(args.address, args.namespace, timeout=args.timeout)
    try:
        if args.group_name == "namespaces":
            nss = await client.namespaces()
            if args.quiet:
                for ns in nss:
                    out(ns.name)
                return 0
            rows = ["NAME\tLABELS\t"] + [
                f"{ns.name}\t{','.join(sorted(f'{k}={v}' for k, v in ns.labels.items()))}\t" for ns in nss
            ]
            out(_table(1, 8, 1, rows), end="")
        elif args.group_name == "containers":
            cs = await client.containers(args.filters)
            if args.quiet:
                for c in cs:
                    out(c.id)
                return 0
            rows = ["CONTAINER\tIMAGE\tRUNTIME\t"] + [f"{c.id}\t{c.image or '-'}\t{c.runtime}\t" for c in cs]
            out(_table(4, 8, 4, rows), end="")
        else:
            tasks = await client.tasks()
            if args.quiet:
                for t in tasks:
                    out(t.id)
                return 0
            rows = ["TASK\tPID\tSTATUS\t"] + [f"{t.id}\t{t.pid}\t{t.status}" for t in tasks]
            out(_table(4, 8, 4, rows), end="")
    except CtrError as exc:
        err(f"ctr: {exc}")
        return 1
    except OSError as exc:
        err(f'ctr: failed to dial "{args.address}": {exc}')
        return 1
    finally:
        client.close()
    return 0


COMMAND = Command("ctr", "Talk to the daemon's containerd-compatible gRPC API", build, run)
