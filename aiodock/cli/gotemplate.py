"""A small, safe evaluator for the Go text/template subset used with ``--format``.

Supported: literal text, ``{{.}}``, dotted paths (``{{.State.Status}}``, ``{{.Config.Labels.app}}``), pipes
(``{{.Config | json}}``), the functions ``json index join split upper lower title len println`` and trim
markers (``{{-`` / ``-}}``). No ``range``/``if``/variables: those raise ``TemplateError``. Nothing is ever
``eval``-ed; values are rendered like Go's ``fmt.Sprint`` of decoded JSON.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from typing import Any

NO_VALUE = "<no value>"
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


class TemplateError(ValueError):
    pass


class _Missing:
    """A map key that does not exist: printed as "<no value>" like Go."""


MISSING = _Missing()


def render_value(value: Any) -> str:
    if value is MISSING:
        return NO_VALUE
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{render_value(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(render_value(v) for v in value) + "]"
    return str(value)


def _json(value: Any) -> str:
    return json.dumps(None if value is MISSING else value, ensure_ascii=False, separators=(",", ":"))


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, MISSING)
        elif isinstance(value, list) and isinstance(key, int):
            if not 0 <= key < len(value):
                raise TemplateError(f"error calling index: index out of range: {key}")
            value = value[key]
        else:
            raise TemplateError(f"error calling index: cannot index {render_value(value)}")
    return value


def _len(value: Any) -> int:
    if isinstance(value, (str, list, dict)):
        return len(value)
    raise TemplateError(f"error calling len: len of type {type(value).__name__}")


FUNCS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "index": _index,
    "join": lambda items, sep: str(sep).join(render_value(i) for i in (items or [])),
    "split": lambda s, sep: str(s).split(str(sep)),
    "upper": lambda s: render_value(s).upper(),
    "lower": lambda s: render_value(s).lower(),
    "title": lambda s: render_value(s).title(),
    "len": _len,
    "println": lambda *a: " ".join(render_value(x) for x in a) + "\n",
}


def _lookup(data: Any, path: str) -> Any:
    value = data
    for part in path.split(".")[1:]:
        if not part:
            continue
        if isinstance(value, dict):
            value = value.get(part, MISSING)
        elif value is MISSING or value is None:
            return MISSING if value is MISSING else None
        else:
            raise TemplateError(f"can't evaluate field {part} in type {type(value).__name__}")
    return value


def _literal(token: str, data: Any) -> Any:
    if token.startswith("."):
        return _lookup(data, token)
    if token.startswith(('"', "`")):
        return token[1:-1]
    if token in ("true", "false"):
        return token == "true"
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    raise TemplateError(f'function "{token}" not defined' if token.isidentifier() else f"bad token {token!r}")


def _command(tokens: list[str], data: Any, piped: list[Any]) -> Any:
    head = tokens[0]
    if head in FUNCS:
        args = [_literal(t, data) for t in tokens[1:]] + piped
        return FUNCS[head](*args)
    if len(tokens) > 1 or piped:
        raise TemplateError(f"can't give argument to non-function {head}")
    return _literal(head, data)


def _pipeline(text: str, data: Any) -> Any:
    text = text.strip()
    if not text:
        raise TemplateError("missing value for command")
    first = text.split()[0]
    if first in ("range", "if", "with", "else", "end", "define", "template", "block") or first.startswith("$"):
        raise TemplateError(f"unsupported template action: {first}")
    piped: list[Any] = []
    for part in text.split("|"):
        lexer = shlex.shlex(part, posix=False)
        lexer.whitespace_split = True
        lexer.quotes = '"`'
        tokens = list(lexer)
        if not tokens:
            raise TemplateError("missing command in pipeline")
        piped = [_command(tokens, data, piped)]
    return piped[0]


def render(template: str, data: Any) -> str:
    out: list[str] = []
    pos = 0
    trim_next = False
    for match in _ACTION.finditer(template):
        literal = template[pos:match.start()]
        if trim_next:
            literal = literal.lstrip()
        if match.group(1):
            literal = literal.rstrip()
        out.append(literal)
        body = match.group(2)
        if not body.strip().startswith("/*"):
            out.append(render_value(_pipeline(body, data)))
        trim_next = bool(match.group(3))
        pos = match.end()
    tail = template[pos:]
    if "{{" in tail:
        raise TemplateError("unclosed action")
    out.append(tail.lstrip() if trim_next else tail)
    return "".join(out)
