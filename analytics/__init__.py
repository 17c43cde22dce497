"""askug analytics: frames in, frames out, on top of the warehouse's public API.

Expected consumption and the colour-coded deviation table; VEE (validation, estimation,
editing) with its audit trail; consolidated gas-day cubes and the universal report;
streamed exports and the billing upload; gas balance, limit discipline and weather
normalisation.  See ``analytics/README.md``.
"""

from analytics._deviation import (
    AMBER,
    DEVIATION_SCHEMA,
    GREEN,
    GREEN_PCT,
    GREY,
    RED,
    RED_PCT,
    deviation_colour,
    deviation_table,
)
from analytics._expected import (
    EXPECTED_SCHEMA,
    expected_consumption,
    latest_backcast,
    latest_forecast,
)
from analytics.errors import AnalyticsError

__all__ = [
    "AMBER",
    "DEVIATION_SCHEMA",
    "EXPECTED_SCHEMA",
    "GREEN",
    "GREEN_PCT",
    "GREY",
    "RED",
    "RED_PCT",
    "AnalyticsError",
    "deviation_colour",
    "deviation_table",
    "expected_consumption",
    "latest_backcast",
    "latest_forecast",
]

# --- VEE: validation, estimation, editing, audit ---------------------------------------
from analytics._edit import EditSummary, edit_values, read_audit
from analytics._estimate import ESTIMATES_SCHEMA, EstimationParams, LongGapEstimator, estimate
from analytics._vee import (
    VeeReport,
    VeeRunSummary,
    quality_summary,
    read_findings,
    run_vee,
    vee_report,
)
from analytics._vee_rules import (
    FINDINGS_SCHEMA,
    RuleInfo,
    VeeRules,
    check_clipping,
    check_clock,
    check_corrector,
    check_counter,
    check_gaps,
    check_negative,
    check_ranges,
    check_spikes,
    check_sums,
    check_zero_and_frozen,
    complete_grid,
    flagged_intervals,
    validate,
)
from analytics._vee_rules import RULES as VEE_RULES

__all__ += [
    "ESTIMATES_SCHEMA",
    "FINDINGS_SCHEMA",
    "VEE_RULES",
    "EditSummary",
    "EstimationParams",
    "LongGapEstimator",
    "RuleInfo",
    "VeeReport",
    "VeeRules",
    "VeeRunSummary",
    "check_clipping",
    "check_clock",
    "check_corrector",
    "check_counter",
    "check_gaps",
    "check_negative",
    "check_ranges",
    "check_spikes",
    "check_sums",
    "check_zero_and_frozen",
    "complete_grid",
    "edit_values",
    "estimate",
    "flagged_intervals",
    "quality_summary",
    "read_audit",
    "read_findings",
    "run_vee",
    "validate",
    "vee_report",
]

# --- gas-day cubes and the universal report ---------------------------------------------
from analytics._report import (
    PDF_MEASURES,
    REPORT_MEASURES,
    REPORT_PARTS,
    ReportFilter,
    select_meters,
    universal_report,
    write_report_pdf,
)

__all__ += [
    "PDF_MEASURES",
    "REPORT_MEASURES",
    "REPORT_PARTS",
    "ReportFilter",
    "select_meters",
    "universal_report",
    "write_report_pdf",
]

# --- exports and the billing upload -----------------------------------------------------
from analytics._billing import (
    BILLING_SCHEMA,
    BillingUpload,
    billing_accounts,
    billing_csv,
    billing_history,
    billing_xml,
    run_billing,
)
from analytics._export import (
    EXPORT_FORMATS,
    FORMULA_PREFIXES,
    ExportFormat,
    ExportSummary,
    iter_table,
    write_export,
)
from analytics.errors import BillingError, ExportError

__all__ += [
    "BILLING_SCHEMA",
    "EXPORT_FORMATS",
    "FORMULA_PREFIXES",
    "BillingError",
    "BillingUpload",
    "ExportError",
    "ExportFormat",
    "ExportSummary",
    "billing_accounts",
    "billing_csv",
    "billing_history",
    "billing_xml",
    "iter_table",
    "run_billing",
    "write_export",
]

# --- gas balance, limit discipline, weather normalisation -------------------------------
from analytics._balance import (
    BALANCE_SCHEMA,
    INFLOW_SCHEMA,
    balance_from_store,
    gas_balance,
    read_inflow_file,
    validate_inflow,
)
from analytics._figures import balance_figure, limit_figure, normalised_figure
from analytics._limits import (
    DAILY_CHECK_SCHEMA,
    MONTHLY_STATUS_SCHEMA,
    daily_limit_check,
    gas_day_use,
    limits_from_store,
    monthly_limit_status,
    read_limits_file,
)
from analytics._normalise import (
    NORMALISED_SCHEMA,
    aggregate_normalised,
    daily_with_temperature,
    fit_hdd,
    normal_year,
    normalise_consumption,
    normalise_from_store,
)
from analytics.errors import LimitsFileError

__all__ += [
    "BALANCE_SCHEMA",
    "DAILY_CHECK_SCHEMA",
    "INFLOW_SCHEMA",
    "MONTHLY_STATUS_SCHEMA",
    "NORMALISED_SCHEMA",
    "LimitsFileError",
    "aggregate_normalised",
    "balance_figure",
    "balance_from_store",
    "daily_limit_check",
    "daily_with_temperature",
    "fit_hdd",
    "gas_balance",
    "gas_day_use",
    "limit_figure",
    "limits_from_store",
    "monthly_limit_status",
    "normal_year",
    "normalise_consumption",
    "normalise_from_store",
    "normalised_figure",
    "read_inflow_file",
    "read_limits_file",
    "validate_inflow",
]
