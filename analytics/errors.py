"""Errors of the analytics package: each names what was wrong and how to fix it."""

from __future__ import annotations


class AnalyticsError(Exception):
    """Base class of every analytics failure the user can fix."""


class ExportError(AnalyticsError):
    """An export cannot be written (format, path, columns, types); no file is left behind."""


class BillingError(AnalyticsError):
    """The billing upload cannot be built or delivered; the failure is recorded."""


class LimitsFileError(AnalyticsError):
    """A limits file is malformed; the message lists the bad lines and how to fix them."""
