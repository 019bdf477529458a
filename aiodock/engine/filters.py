"""Docker's list and prune filters shared by containers, images and volumes."""

from __future__ import annotations

from collections.abc import Mapping


def labels_match(labels: Mapping[str, str], filters: Mapping[str, list[str]]) -> bool:
    """`label=key` / `label=key=value`: every one must match; `label!=...`: none may match."""
    for want in filters.get("label", []):
        key, sep, value = want.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    for unwanted in filters.get("label!", []):
        key, sep, value = unwanted.partition("=")
        if key in labels and (not sep or labels[key] == value):
            return False
    return True
