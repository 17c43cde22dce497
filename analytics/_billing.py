"""The billing upload: a gas month's consumption per account, for 1C, to a folder or URL.

An *account* is a metering point (``meter_id``, the 1C "лицевой счёт").  A billing
*period* is a gas month: the gas days whose date lies in that calendar month, each gas
day starting at the metering point's contract hour in its time zone
(:func:`warehouse.gas_day_bounds`), so January 2022 for a Moscow point with contract hour
10 runs from 2022-01-01 10:00 to 2022-02-01 10:00 local time (07:00 UTC).

:func:`run_billing` builds the accounts (:func:`billing_accounts`), renders them as the
documented 1C exchange XML (:func:`billing_xml`) and/or CSV (:func:`billing_csv`),
delivers each file to a folder (atomic write) or an HTTP endpoint (POST), and records
every attempt in the ``billing_uploads`` table.  Re-running is safe: a file whose
account rows are unchanged since the last successful delivery to the same destination
is not sent again (status ``unchanged``); changed rows go out as the next *revision*,
which replaces the earlier ones for that period.  See ``analytics/README.md``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from zoneinfo import ZoneInfo

import polars as pl

from analytics._export import _atomic, _guard, xml_escape, xml_escape_expr
from analytics.errors import BillingError
from warehouse import Store, gas_day_bounds, load_meters

BillingFormat = Literal["xml", "csv"]
BILLING_FORMATS: Final = ("xml", "csv")
#: XML namespace of the exchange file; the version moves when the schema changes.
BILLING_NAMESPACE: Final = "urn:askug:billing:1c:1"
BILLING_FORMAT_VERSION: Final = "1.0"

#: Columns of :func:`billing_accounts` (and of the CSV file, in this order).
BILLING_SCHEMA: Final = pl.Schema(
    {
        "account": pl.String,
        "account_name": pl.String,
        "company_id": pl.String,
        "company_name": pl.String,
        "branch_id": pl.String,
        "branch_name": pl.String,
        "resource": pl.String,
        "category": pl.String,
        "period": pl.String,
        "period_start": pl.String,  # local time with offset, ISO 8601
        "period_end": pl.String,  # exclusive
        "volume_m3": pl.Float64,  # null when no hour has a value
        "hours_expected": pl.Int32,
        "hours_valid": pl.Int32,
        "hours_estimated": pl.Int32,
        "hours_edited": pl.Int32,
        "hours_suspect": pl.Int32,
        "hours_missing": pl.Int32,
        "monthly_limit_m3": pl.Float64,
        "monthly_plan_m3": pl.Float64,
    }
)

#: XML element of each account column, in document order (see the README's table).
XML_ELEMENTS: Final = {
    "account": "ЛицевойСчет",
    "account_name": "Наименование",
    "company_id": "КодКомпании",
    "company_name": "Компания",
    "branch_id": "КодФилиала",
    "branch_name": "Филиал",
    "resource": "Ресурс",
    "category": "Категория",
    "period_start": "НачалоПериода",
    "period_end": "ОкончаниеПериода",
    "volume_m3": "ОбъемМ3",
    "hours_expected": "ЧасовВПериоде",
    "hours_valid": "ЧасовДостоверно",
    "hours_estimated": "ЧасовРасчетно",
    "hours_edited": "ЧасовИсправлено",
    "hours_suspect": "ЧасовСомнительно",
    "hours_missing": "ЧасовНетДанных",
    "monthly_limit_m3": "ЛимитМесяцаМ3",
    "monthly_plan_m3": "ПланМесяцаМ3",
}

_VOLUME_DIGITS: Final = 3  # litres: what a billing system books
_METER_CHUNK: Final = 2_000


@dataclass(frozen=True)
class BillingUpload:
    """One delivery attempt, as recorded in ``billing_uploads``."""

    upload_id: str
    period: str
    fmt: str
    destination: str
    scope: str
    revision: int
    file_name: str
    accounts: int
    volume_m3: float | None
    data_sha256: str
    file_sha256: str | None
    bytes: int | None
    status: str  # sent | failed | unchanged
    detail: str


# --- periods ---------------------------------------------------------------------------
def parse_period(text: str | dt.date, *, today: dt.date | None = None) -> dt.date:
    """The first day of a billing month from ``YYYY-MM``, ``previous``, ``current`` or a date.

    ``previous`` is the calendar month before ``today`` (UTC today by default): what a
    scheduled run early in a month bills.
    """
    if isinstance(text, dt.date):
        return text.replace(day=1)
    value = text.strip().lower()
    today = today or dt.datetime.now(dt.UTC).date()
    if value == "current":
        return today.replace(day=1)
    if value == "previous":
        return (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    try:
        year, month = value.split("-")
        return dt.date(int(year), int(month), 1)
    except ValueError:
        raise BillingError(
            f"billing period must look like 2022-01 (or be 'previous'/'current'), got {text!r}"
        ) from None


def _next_month(first: dt.date) -> dt.date:
    return (first + dt.timedelta(days=32)).replace(day=1)


def period_bounds(first: dt.date, time_zone: str, contract_hour: int) -> tuple[dt.datetime, dt.datetime]:
    """UTC ``[start, end)`` of the gas month beginning on ``first`` for one zone and contract hour."""
    start, _ = gas_day_bounds(first, time_zone, contract_hour)
    end, _ = gas_day_bounds(_next_month(first), time_zone, contract_hour)
    return start, end


# --- the accounts -----------------------------------------------------------------------
def billing_accounts(
    store: Store,
    period: str | dt.date,
    *,
    company_ids: Sequence[str] | None = None,
    now: dt.datetime | None = None,
    allow_open: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """The gas month's consumption per account (metering point), ready for billing.

    Parameters
    ----------
    store
        The warehouse; reads ``metering_points`` (with branch and company),
        ``hourly_archive`` and ``contracts``.
    period
        ``YYYY-MM``, ``previous``, ``current`` or any date in the month.
    company_ids
        Bill only these companies (default: all).
    now
        The current UTC time (for tests); a period that has not ended yet is refused
        unless ``allow_open``.
    progress
        Called with ``(metering points done, total)``.

    Returns
    -------
    polars.DataFrame
        :data:`BILLING_SCHEMA`, one row per account, sorted by company, branch, account.
        ``volume_m3`` is the sum of the hours that have a value (valid, estimated,
        edited or suspect; rounded to 0.001 m³, standard conditions) and null when no
        hour has one; ``hours_*`` count the hours of the gas month by quality, with
        ``hours_missing`` = hours expected − hours with a value (DST months have one
        hour more or less).  Limit and plan come from the contract in force on the
        period's first day.

    Raises
    ------
    BillingError
        Malformed period, unknown company, a period still open, or no hourly data
        stored for any account in the period.
    """
    first = parse_period(period)
    label = f"{first:%Y-%m}"
    now = now or dt.datetime.now(dt.UTC)
    meters = load_meters(store)
    if company_ids is not None:
        known = set(meters.get_column("company_id").to_list())
        unknown = sorted(set(company_ids) - known)
        if unknown:
            raise BillingError(
                f"unknown company {', '.join(unknown)}; known companies: {', '.join(sorted(known)) or 'none'}"
            )
        meters = meters.filter(pl.col("company_id").is_in(list(company_ids)))
    if meters.height == 0:
        raise BillingError("no metering points to bill; load the enterprise's reference data first")
    groups = meters.select("time_zone", "contract_hour").unique().sort("time_zone", "contract_hour")
    bounds: dict[tuple[str, int], tuple[dt.datetime, dt.datetime]] = {}
    for tz, hour in groups.iter_rows():
        bounds[(tz, int(hour))] = period_bounds(first, tz, int(hour))
    latest_end = max(end for _, end in bounds.values())
    if latest_end > now and not allow_open:
        raise BillingError(
            f"gas month {label} is not over until {latest_end:%Y-%m-%d %H:%M} UTC; "
            "bill it after that (or choose an earlier --period)"
        )
    parts: list[pl.DataFrame] = []
    done = 0
    total = meters.height
    for (tz, hour), (start, end) in bounds.items():
        ids = (
            meters.filter((pl.col("time_zone") == tz) & (pl.col("contract_hour") == hour))
            .get_column("meter_id")
            .to_list()
        )
        zone = ZoneInfo(tz)
        for offset in range(0, len(ids), _METER_CHUNK):
            chunk = ids[offset : offset + _METER_CHUNK]
            hourly = store.read(
                "hourly_archive",
                start=start,
                end=end,
                where={"meter_id": chunk},
                columns=["meter_id", "volume_m3", "quality"],
            )
            parts.append(
                _aggregate(hourly, chunk, start=start, end=end).with_columns(
                    period_start=pl.lit(start.astimezone(zone).isoformat()),
                    period_end=pl.lit(end.astimezone(zone).isoformat()),
                )
            )
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    sums = pl.concat(parts)
    if sums.get_column("hours_with_value").sum() == 0:
        raise BillingError(
            f"no hourly consumption is stored for gas month {label}"
            + (f" for companies {', '.join(company_ids)}" if company_ids else "")
            + "; load the data first or choose another --period"
        )
    contracts = _contract_terms(store, first)
    out = (
        meters.join(sums, on="meter_id", how="inner")
        .join(contracts, on="meter_id", how="left")
        .select(
            pl.col("meter_id").alias("account"),
            pl.col("name").alias("account_name"),
            "company_id",
            "company_name",
            "branch_id",
            "branch_name",
            "resource",
            "category",
            pl.lit(label).alias("period"),
            "period_start",
            "period_end",
            pl.col("volume_m3").round(_VOLUME_DIGITS),
            "hours_expected",
            "hours_valid",
            "hours_estimated",
            "hours_edited",
            "hours_suspect",
            (pl.col("hours_expected") - pl.col("hours_with_value")).alias("hours_missing"),
            "monthly_limit_m3",
            "monthly_plan_m3",
        )
        .sort("company_id", "branch_id", "account")
    )
    return out.cast(dict(BILLING_SCHEMA))  # type: ignore[arg-type]


def _aggregate(hourly: pl.DataFrame, ids: list[str], *, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    expected = int((end - start) / dt.timedelta(hours=1))
    has = pl.col("volume_m3").is_not_null() & (pl.col("quality") != "missing")
    agg = hourly.group_by("meter_id").agg(
        pl.when(has).then(pl.col("volume_m3")).sum().alias("volume_m3"),
        has.sum().alias("hours_with_value"),
        *[(has & (pl.col("quality") == q)).sum().alias(f"hours_{name}") for q, name in (
            ("valid", "valid"), ("estimated", "estimated"), ("edited", "edited"), ("suspect", "suspect")
        )],
    )
    base = pl.DataFrame({"meter_id": ids}, schema={"meter_id": pl.String})
    counts = ["hours_with_value", "hours_valid", "hours_estimated", "hours_edited", "hours_suspect"]
    return (
        base.join(agg, on="meter_id", how="left")
        .with_columns(pl.col(c).fill_null(0).cast(pl.Int32) for c in counts)
        .with_columns(
            # Missing is null, never 0: an account with no hour of data has no volume.
            pl.when(pl.col("hours_with_value") > 0).then(pl.col("volume_m3")).alias("volume_m3"),
            pl.lit(expected, dtype=pl.Int32).alias("hours_expected"),
        )
    )


def _contract_terms(store: Store, first: dt.date) -> pl.DataFrame:
    contracts = store.read("contracts")
    in_force = contracts.filter(
        (pl.col("valid_from") <= first) & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= first))
    )
    return (
        in_force.sort("valid_from")
        .group_by("meter_id")
        .agg(pl.col("monthly_limit_m3").last(), pl.col("monthly_plan_m3").last())
    )


# --- files -----------------------------------------------------------------------------
def _number(col: str, digits: int | None) -> pl.Expr:
    """Decimal text without exponent (xs:decimal), for the XML and CSV files."""
    from analytics._export import _fixed

    if digits is None:
        return pl.col(col).cast(pl.String)
    return _fixed(pl.col(col), digits)


def billing_csv(accounts: pl.DataFrame) -> bytes:
    """The accounts as CSV: UTF-8, ``;``-separated, a header row, ``.`` as decimal point.

    Columns are :data:`BILLING_SCHEMA`'s, in order.  Empty cells are nulls.  Text that
    could run as a spreadsheet formula gets a leading ``'``, as in every CSV export.
    Contains nothing run-specific, so the same rows always give the same bytes.
    """
    frame = accounts.select(list(BILLING_SCHEMA))
    exprs = []
    for name, dtype in BILLING_SCHEMA.items():
        if dtype == pl.String:
            exprs.append(_guard(name))
        elif dtype == pl.Float64:
            exprs.append(_number(name, _VOLUME_DIGITS).alias(name))
        else:
            exprs.append(pl.col(name))
    buf = io.BytesIO()
    frame.select(exprs).write_csv(buf, separator=";", line_terminator="\r\n")
    return buf.getvalue()


def billing_xml(
    accounts: pl.DataFrame,
    *,
    period: str,
    upload_id: str,
    revision: int,
    created_at: dt.datetime,
    scope: str = "all",
) -> bytes:
    """The accounts as the 1C exchange XML (``ФайлОбмена``; schema in the README).

    One ``Счет`` element per account with the child elements of :data:`XML_ELEMENTS`
    in that order; an element whose value is null is left out.  Decimals use ``.`` and
    no exponent; times are ISO 8601 with the local offset.
    """
    frame = accounts.select(list(BILLING_SCHEMA))
    volume = frame.get_column("volume_m3").sum()
    attrs = {
        "ВерсияФормата": BILLING_FORMAT_VERSION,
        "Идентификатор": upload_id,
        "ДатаВыгрузки": created_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Период": period,
        "Ревизия": str(revision),
        "Источник": "askug",
        "Область": scope,
        "КоличествоСчетов": str(frame.height),
        "ИтогоОбъемМ3": f"{volume:.{_VOLUME_DIGITS}f}",
    }
    head = " ".join(f'{k}="{xml_escape(v)}"' for k, v in attrs.items())
    parts: list[pl.Expr] = [pl.lit("  <Счет>\n")]
    for col, element in XML_ELEMENTS.items():
        dtype = BILLING_SCHEMA[col]
        if dtype == pl.Float64:
            text = _number(col, _VOLUME_DIGITS)
        elif dtype == pl.String:
            text = xml_escape_expr(pl.col(col))
        else:
            text = pl.col(col).cast(pl.String)
        value = pl.lit(f"    <{element}>") + text + pl.lit(f"</{element}>\n")
        parts.append(pl.when(pl.col(col).is_null()).then(pl.lit("")).otherwise(value))
    parts.append(pl.lit("  </Счет>\n"))
    body = frame.select(pl.concat_str(parts).alias("x")).get_column("x") if frame.height else pl.Series([], dtype=pl.String)
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ФайлОбмена xmlns="{BILLING_NAMESPACE}" {head}>\n'
        + "".join(body.to_list())
        + "</ФайлОбмена>\n"
    )
    return xml.encode("utf-8")


# --- delivery and the record -------------------------------------------------------------
def _destination_label(destination: str | Path) -> tuple[str, bool]:
    """(label recorded in the table, is HTTP).  Credentials in a URL are never recorded."""
    text = str(destination)
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            raise BillingError(f"billing destination {text!r} is not a valid URL; give e.g. https://host/path")
        netloc = parsed.hostname + (f":{parsed.port}" if parsed.port else "")
        return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, parsed.query, "")), True
    if parsed.scheme and len(parsed.scheme) > 1:
        raise BillingError(f"billing destination {text!r}: only folders and http(s) URLs are supported")
    return str(Path(text).resolve()), False


def _basic_auth(url: str) -> dict[str, str]:
    """An ``Authorization: Basic`` header from ``user:password@`` in a URL (urllib ignores it)."""
    import base64

    parts = urllib.parse.urlsplit(url)
    if not parts.username:
        return {}
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def _post(url: str, data: bytes, headers: Mapping[str, str], timeout: float) -> str:
    request = urllib.request.Request(url, data=data, method="POST", headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
            reply = response.read(200).decode("utf-8", errors="replace").strip()
    except urllib.error.HTTPError as exc:
        body = exc.read(200).decode("utf-8", errors="replace").strip()
        raise BillingError(f"{url} answered HTTP {exc.code} {exc.reason}: {body}".strip(": ")) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BillingError(f"cannot reach {url}: {reason}") from None
    if not 200 <= status < 300:
        raise BillingError(f"{url} answered HTTP {status}")
    return f"HTTP {status}" + (f": {reply}" if reply else "")


def _previous(store: Store, *, period: str, fmt: str, destination: str, scope: str) -> pl.DataFrame:
    rows = store.read(
        "billing_uploads", where={"period": [period], "fmt": [fmt], "destination": [destination]}
    )
    return rows.filter((pl.col("scope") == scope) & (pl.col("status") == "sent")).sort("ts", "revision")


def run_billing(
    store: Store,
    period: str | dt.date,
    destination: str | Path,
    *,
    formats: Sequence[str] = BILLING_FORMATS,
    company_ids: Sequence[str] | None = None,
    force: bool = False,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    now: dt.datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[BillingUpload]:
    """Build the period's billing files and deliver those whose rows changed; record each attempt.

    Parameters
    ----------
    store
        The warehouse (also where the ``billing_uploads`` record goes).
    period
        ``YYYY-MM``, ``previous`` (what a scheduled run uses) or ``current``.
    destination
        A folder (must exist; files are written atomically) or an ``http(s)://`` URL
        (each file is POSTed; any 2xx answer counts as delivered).
    formats
        ``xml`` (the 1C exchange file) and/or ``csv``.
    company_ids
        Bill only these companies; the scope is part of the file name and of the
        re-upload rule.
    force
        Send even if the same rows were already delivered (as a new revision).
    headers
        Extra HTTP headers, e.g. ``{"Authorization": "Bearer …"}`` (never recorded).
    timeout_s
        HTTP timeout per request, seconds.

    Returns
    -------
    list[BillingUpload]
        One per format, as recorded.

    Raises
    ------
    BillingError
        Bad input (see :func:`billing_accounts`), a missing folder, or a delivery that
        failed; a failed attempt is recorded with status ``failed`` before raising, and
        the other formats are still attempted.
    """
    bad = [f for f in formats if f not in BILLING_FORMATS]
    if bad or not formats:
        raise BillingError(f"billing formats must be among {list(BILLING_FORMATS)}, got {list(formats)}")
    label, is_http = _destination_label(destination)
    if not is_http and not Path(label).is_dir():
        raise BillingError(f"billing folder {destination} does not exist; create it or give an http(s) URL")
    now = now or dt.datetime.now(dt.UTC)
    first = parse_period(period, today=now.date())
    period_label = f"{first:%Y-%m}"
    scope = ",".join(sorted(set(company_ids))) if company_ids else "all"
    accounts = billing_accounts(store, first, company_ids=company_ids, now=now, progress=progress)
    csv_bytes = billing_csv(accounts)
    data_sha = hashlib.sha256(csv_bytes).hexdigest()
    total = accounts.get_column("volume_m3").sum()
    volume = None if total is None else round(float(total), _VOLUME_DIGITS)
    results: list[BillingUpload] = []
    failures: list[str] = []
    for fmt in dict.fromkeys(formats):
        sent = _previous(store, period=period_label, fmt=fmt, destination=label, scope=scope)
        upload_id = uuid.uuid4().hex
        if sent.height and sent.get_column("data_sha256")[-1] == data_sha and not force:
            last = sent.row(-1, named=True)
            result = BillingUpload(
                upload_id, period_label, fmt, label, scope, int(last["revision"]), last["file_name"],
                accounts.height, volume, data_sha, last["file_sha256"], last["bytes"], "unchanged",
                f"rows unchanged since revision {last['revision']} sent {last['ts']:%Y-%m-%d %H:%M} UTC; not sent again",
            )
            _record(store, result, now)
            results.append(result)
            continue
        revision = int(sent.get_column("revision").max() or 0) + 1  # type: ignore[arg-type]
        stem = f"askug_billing_{period_label}" + ("" if scope == "all" else "_" + scope.replace(",", "-"))
        file_name = f"{stem}_r{revision}.{fmt}"
        if fmt == "xml":
            data = billing_xml(
                accounts, period=period_label, upload_id=upload_id, revision=revision, created_at=now, scope=scope
            )
        else:
            data = csv_bytes
        file_sha = hashlib.sha256(data).hexdigest()
        try:
            if is_http:
                content_type = "application/xml" if fmt == "xml" else "text/csv"
                detail = _post(
                    label,
                    data,
                    {
                        **_basic_auth(str(destination)),
                        **(headers or {}),
                        "Content-Type": f"{content_type}; charset=utf-8",
                        "Content-Disposition": f'attachment; filename="{file_name}"',
                        "X-Askug-Upload-Id": upload_id,
                        "X-Askug-Period": period_label,
                        "X-Askug-Revision": str(revision),
                        "X-Askug-Sha256": file_sha,
                    },
                    timeout_s,
                )
            else:
                target = Path(label) / file_name
                with _atomic(target) as tmp:
                    tmp.write_bytes(data)
                detail = f"written to {target}"
            status = "sent"
        except (BillingError, OSError) as exc:
            status, detail = "failed", str(exc)
            failures.append(f"{fmt}: {exc}")
        result = BillingUpload(
            upload_id, period_label, fmt, label, scope, revision, file_name, accounts.height, volume,
            data_sha, file_sha, len(data), status, detail,
        )
        _record(store, result, now)
        results.append(result)
    if failures:
        raise BillingError(
            f"billing upload of {period_label} to {label} failed ({'; '.join(failures)}); "
            "the attempt is recorded; fix the destination and run again"
        )
    return results


def _record(store: Store, upload: BillingUpload, now: dt.datetime) -> None:
    row = {
        "upload_id": upload.upload_id,
        "ts": now,
        "period": upload.period,
        "fmt": upload.fmt,
        "destination": upload.destination,
        "scope": upload.scope,
        "revision": upload.revision,
        "file_name": upload.file_name,
        "accounts": upload.accounts,
        "volume_m3": upload.volume_m3,
        "data_sha256": upload.data_sha256,
        "file_sha256": upload.file_sha256,
        "bytes": upload.bytes,
        "status": upload.status,
        "detail": upload.detail,
    }
    frame = pl.DataFrame([row], schema_overrides={"ts": pl.Datetime("us", "UTC"), "volume_m3": pl.Float64})
    store.write("billing_uploads", frame)


def billing_history(store: Store, *, period: str | None = None) -> pl.DataFrame:
    """The record of billing uploads (optionally of one ``YYYY-MM`` period), newest first."""
    where = {"period": [f"{parse_period(period):%Y-%m}"]} if period else None
    return store.read("billing_uploads", where=where).sort("ts", "fmt", descending=[True, False])
