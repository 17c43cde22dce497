"""``askug vee …``, ``askug report …``, ``askug export …``, ``askug billing …`` and friends.

Registered into the main parser by :func:`dashboards.cli.build_parser`; commands use the
helpers of :mod:`dashboards.cli` (``Settings``, ``step``, ``done``, ``CommandError``).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add this module's sub-commands to the ``askug`` parser's sub-parsers ``sub``."""
    _ = (sub, argparse)
