"""Errors of the analytics package: each names what was wrong and how to fix it."""

from __future__ import annotations


class AnalyticsError(Exception):
    """Base class of every analytics failure the user can fix."""
