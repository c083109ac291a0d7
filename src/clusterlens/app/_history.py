"""The review's action log in words, for the page's history panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["describe_action"]


def _n_items(items: Any) -> str:
    n = len(items) if isinstance(items, list) else 1
    return "1 item" if n == 1 else f"{n:,} items"


def describe_action(kind: str, args: dict[str, Any]) -> str:
    """One logged action in words, e.g. ``Named cluster #3 "ant"``."""
    name = args.get("name")
    if kind == "name_cluster":
        return f'Named cluster #{args.get("cluster")} "{name}"'
    if kind == "label_items":
        return f'Labelled {_n_items(args.get("items"))} "{name}"'
    if kind == "reject":
        where = {"pool": "to the pool", "nearest": "to the nearest cluster"}.get(
            str(args.get("to")), ""
        )
        return f"Rejected {_n_items(args.get('items'))} {where}".rstrip()
    if kind == "merge":
        return f"Merged cluster #{args.get('other')} into #{args.get('into')}"
    if kind == "split":
        return f"Split cluster #{args.get('cluster')} in two"
    if kind == "resolve_suspect":
        d = args.get("decision")
        item = args.get("item")
        if d == "accept":
            return f"Accepted the suggested label of item {item}"
        if d == "keep":
            return f"Kept the given label of item {item}"
        return f'Relabelled item {item} "{args.get("label")}"'
    if kind == "keep_one":
        items = args.get("items")
        rest = [i for i in (items if isinstance(items, list) else [items])]
        rest = [i for i in rest if i != args.get("keep")]
        return f"Kept item {args.get('keep')}, marked {_n_items(rest)} as duplicates"
    if kind == "switch_results":
        return (
            f"Switched to results {Path(str(args.get('to'))).parent.name or '?'} "
            f"(kept {args.get('n_kept', 0):,} labels)"
        )
    return kind.replace("_", " ").capitalize()
