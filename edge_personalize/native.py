"""The optional C code, `edge_personalize._speedups`, when it is built and not turned off."""

from __future__ import annotations

import os
from types import ModuleType


def speedups() -> ModuleType | None:
    """The compiled module, or None when it was not built (no compiler when the package was
    installed) or EDGE_PERSONALIZE_PURE_PYTHON asks for the pure-Python code."""
    if os.environ.get("EDGE_PERSONALIZE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from edge_personalize import _speedups
    except ImportError:
        return None
    return _speedups
