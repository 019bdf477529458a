"""Docker's log drivers as aiodock serves them: the names it knows, their options, and the storage each gets.

- ``json-file`` (the default): Docker's format and options (max-size, max-file, compress, labels, env, tag).
- ``local``: accepted as Docker's local driver is used: ``docker logs`` works, with its rotation defaults (20 MiB x 5
  files) and options (max-size, max-file, compress). aiodock stores it in the json-file format (Docker uses its own
  protobuf format, which nothing outside the engine reads).
- ``none``: ``docker logs`` answers 501 "configured logging driver does not support reading", as Docker's, and
  LogPath is empty. The engine still writes the output to an internal log, because attach reads a container's
  output through its log: without rotation, as json-file without max-size (a small rotating ring would lose what an
  attached client has not read yet when the container writes faster than the client reads).

Other names (syslog, journald, gelf, fluentd, awslogs, splunk, plugins) are not registered here and are refused when
the container is created, with Docker's message.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiodock.errors import InvalidArgument
from aiodock.logs.jsonfile import JSON_FILE_LOG_OPTS, parse_log_opts

DEFAULT_DRIVER = "json-file"
BUILTIN_LOG_OPTS = frozenset({"mode", "max-buffer-size"})  # Docker's options valid for every driver
LOCAL_LOG_OPTS = frozenset({"max-size", "max-file", "compress"})
LOCAL_MAX_SIZE = 20 * 1024 * 1024
LOCAL_MAX_FILES = 5


@dataclass(frozen=True)
class LogSettings:
    """How a container's output is kept: the driver's name, rotation, and whether ``docker logs`` may read it."""

    driver: str
    max_size: int | None
    max_files: int
    readable: bool


def log_settings(driver: str | None, opts: dict[str, str]) -> LogSettings:
    """The settings for a container's LogConfig (Type, merged Config); InvalidArgument with Docker's messages."""
    name = driver or DEFAULT_DRIVER
    if name == "none":  # Docker validates no option for none
        return LogSettings("none", None, 1, readable=False)
    mode = opts.get("mode", "")
    if mode not in ("", "blocking", "non-blocking"):
        raise InvalidArgument(f"logger: logger log option 'mode' is not valid: {mode!r}")
    own = {key: value for key, value in opts.items() if key not in BUILTIN_LOG_OPTS}
    if name == "json-file":
        max_size, max_files = parse_log_opts(own, allowed=JSON_FILE_LOG_OPTS, driver=name)
        return LogSettings(name, max_size, max_files, readable=True)
    if name == "local":
        max_size, max_files = parse_log_opts(own, allowed=LOCAL_LOG_OPTS, driver=name)
        return LogSettings(name, LOCAL_MAX_SIZE if max_size is None else max_size,
                           max_files if "max-file" in own else LOCAL_MAX_FILES, readable=True)
    raise InvalidArgument(f"logger: no log driver named '{name}' is registered")
