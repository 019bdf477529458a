"""``--format`` for list commands: a Go template per row; a ``table`` prefix adds aligned headers."""

from __future__ import annotations

from aiodock.cli.base import out
from aiodock.cli.gotemplate import render
from aiodock.cli.tabwriter import docker_table


def _unescape(template: str) -> str:
    return template.replace("\\t", "\t").replace("\\n", "\n")


def print_formatted(template: str, rows: list[dict[str, str]], headers: dict[str, str]) -> int:
    if template.startswith("table"):
        body = _unescape(template[len("table"):].strip()) or "\t".join("{{." + k + "}}" for k in headers)
        table = [render(body, headers).split("\t")] + [render(body, r).split("\t") for r in rows]
        out(docker_table(table), end="")
        return 0
    for r in rows:
        out(render(_unescape(template), r))
    return 0
