"""Shared helpers: validation, chunking, optional imports, progress, registries."""

from __future__ import annotations

from clusterlens.utils.validation import check_random_state

__all__ = ["check_random_state"]
