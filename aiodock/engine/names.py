"""Container names: Docker's rules, uniqueness, and generated adjective_surname names."""

from __future__ import annotations

import random

from aiodock.errors import AlreadyExists
from aiodock.util.ids import validate_container_name

_ADJECTIVES = (
    "agile", "bold", "brave", "bright", "calm", "clever", "cool", "crisp", "eager", "fancy", "fond", "gentle",
    "happy", "hardy", "jolly", "keen", "kind", "lively", "lucid", "merry", "modest", "nimble", "noble", "patient",
    "plucky", "proud", "quiet", "quirky", "rapid", "serene", "sharp", "shiny", "steady", "stoic", "sunny", "swift",
    "tender", "tidy", "upbeat", "vivid", "warm", "wise", "witty", "zealous",
)
_SURNAMES = (
    "agnesi", "babbage", "banach", "bell", "boole", "cantor", "carson", "curie", "darwin", "dijkstra", "euler",
    "faraday", "fermat", "feynman", "franklin", "galois", "gauss", "germain", "goldberg", "hamilton", "hopper",
    "hypatia", "kepler", "knuth", "lamarr", "lovelace", "maxwell", "meitner", "mirzakhani", "noether", "pascal",
    "ramanujan", "ritchie", "shannon", "sinoussi", "thompson", "turing", "volta", "wozniak", "yonath",
)


class NameRegistry:
    """name -> container id; names are kept without the leading slash."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}

    def reserve(self, name: str, container_id: str) -> str:
        name = validate_container_name(name)
        owner = self._ids.get(name)
        if owner is not None and owner != container_id:
            raise AlreadyExists(
                f'Conflict. The container name "/{name}" is already in use by container "{owner}". '
                "You have to remove (or rename) that container to be able to reuse that name."
            )
        self._ids[name] = container_id
        return name

    def generate(self, container_id: str) -> str:
        for attempt in range(64):
            name = f"{random.choice(_ADJECTIVES)}_{random.choice(_SURNAMES)}"
            if attempt > 8:
                name += str(random.randint(0, 99))
            if name not in self._ids:
                self._ids[name] = container_id
                return name
        name = f"{random.choice(_ADJECTIVES)}_{container_id[:12]}"
        self._ids[name] = container_id
        return name

    def release(self, name: str) -> None:
        self._ids.pop(name.lstrip("/"), None)

    def get(self, name: str) -> str | None:
        return self._ids.get(name.lstrip("/"))
