"""The ``askug`` command line: every pipeline step, the demo and the dashboard server.

Environment variables are read here and only here (``ASKUG_DSN``, ``ASKUG_DB``), into
one frozen :class:`Settings`.  Every known failure becomes one line on stderr naming
the problem and the fix, with a non-zero exit code; the store is left as it was,
because each step writes inside a transaction.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger("askug")
console = Console(stderr=True, highlight=False)

EXIT_USAGE = 2
EXIT_FAILED = 1


@dataclass(frozen=True)
class Settings:
    """Where the data lives: PostgreSQL when ``dsn`` is set, else the DuckDB file ``db``."""

    dsn: str | None
    db: Path

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        dsn = args.dsn if args.dsn is not None else os.environ.get("ASKUG_DSN") or None
        db = Path(args.db or os.environ.get("ASKUG_DB") or "askug.duckdb")
        return cls(dsn=dsn, db=db)

    def describe(self) -> str:
        return "PostgreSQL (--dsn)" if self.dsn else f"DuckDB file {self.db}"


class CommandError(Exception):
    """A failure the user can fix; printed as one line."""


# --- progress display ----------------------------------------------------------------
@contextmanager
def step(title: str) -> Iterator[Callable[[int, int], None]]:
    """Show a progress bar for one pipeline step; yields a ``progress(done, total)`` callback."""
    columns = (
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(bar_width=32),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(title, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield progress
        t = bar.tasks[0]
        if t.total is None:
            bar.update(task, total=1, completed=1)
        else:
            bar.update(task, completed=t.total)


def done(message: str) -> None:
    console.print(f"  [green]✓[/green] {message}")


# --- store -----------------------------------------------------------------------------
def _open(settings: Settings, *, check: bool = True, read_only: bool = False) -> Any:
    from warehouse import open_store

    store = open_store(settings.dsn, path=settings.db, read_only=read_only)
    if check:
        try:
            store.check_schema()
        except BaseException:
            store.close()
            raise
    return store


# --- steps -----------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace, settings: Settings) -> None:
    from ingest import SimulationConfig, simulate

    config = SimulationConfig(
        meters=args.meters,
        start=_parse_date(args.start, "--start"),
        days=args.days,
        seed=args.seed,
        faults=not args.no_faults,
        # The nodes' metered inflow (node_inflow) by default, so `askug balance` works
        # on a loaded simulation; the demo calls this without the flag, so it has it too.
        write_inflow=not getattr(args, "no_inflow", False),
    )
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.force:
            raise CommandError(f"output folder {out} is not empty; pass --force to overwrite it or choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    with step("simulate") as progress:
        summary = simulate(config, out, progress=progress)
    done(f"{summary.meters} metering points, {summary.readings:,} readings, {summary.fault_labels} fault labels → {out}")
    if getattr(args, "send", None):
        _send_simulation(args, settings, out)


def _send_simulation(args: argparse.Namespace, settings: Settings, out: Path) -> None:
    """``simulate --send``: the simulated units send their archives over a real transport."""
    from ingest._device_profiles import ProfileRegistry
    from ingest._send import (
        FaultRates,
        Fleet,
        FleetSender,
        load_fleet_reference,
        parse_target,
        register_fleet,
        write_report,
    )
    from ingest._transports.broker import read_secrets_csv

    if not args.to:
        raise CommandError("--send needs --to HOST:PORT (the ingest service, or the broker for mqtt)")
    host, port = parse_target(args.to, transport=args.send)
    registry = ProfileRegistry()
    fleet = Fleet.from_simulation(out, max_units=args.units, registry=registry, last_days=args.last_days)
    if fleet.skipped:
        console.print(f"  [yellow]![/yellow] {len(fleet.skipped):,} units do not fit their profile's device ids and are not sent, e.g. {fleet.skipped[0]}")
    if fleet.unsent_events.height:
        e = fleet.unsent_events.row(0, named=True)
        console.print(f"  [yellow]![/yellow] {fleet.unsent_events.height:,} events cannot be sent ({e['why']}, e.g. {e['device_id']})")
    if args.register:
        with _open(settings) as store, step("register"):
            load_fleet_reference(store, out)
            secrets = register_fleet(store, fleet)
        path = out / "secrets.csv"
        path.write_text("device_id,secret\n" + "".join(f"{d},{s}\n" for d, s in secrets.items()))
        path.chmod(0o600)
        done(f"registered {len(secrets):,} units in {settings.describe()}; secrets → {path}")
    elif args.secrets:
        secrets = read_secrets_csv(args.secrets)
        missing = [u.device_id for u in fleet.units if u.device_id not in secrets]
        if missing and (args.send == "tcp" or args.mqtt_auth):
            raise CommandError(f"{len(missing)} units have no secret in {args.secrets}, e.g. {missing[0]}; register them (`askug devices add`) or pass --register")
        for u in fleet.units:
            u.secret = secrets.get(u.device_id, "")
    elif args.send == "tcp" or args.mqtt_auth:
        raise CommandError("TCP units (and --mqtt-auth) need their secrets: pass --secrets CSV or --register with --dsn")
    sender = FleetSender(
        fleet, registry, transport=args.send, host=host, port=port,
        faults=FaultRates.none() if args.clean else FaultRates(), session_hours=args.session_hours,
        concurrency=args.concurrency, seed=args.seed, mqtt_auth=args.mqtt_auth,
    )  # fmt: skip
    with step(f"send {args.send}") as progress:
        report = sender.run(progress=progress)
    summary_path = write_report(report, out)
    done(f"{len(fleet.units):,} units sent {fleet.start:%Y-%m-%d %H:%M} … {fleet.end:%Y-%m-%d %H:%M} UTC over {args.send} to {args.to}")
    for line in report.summary_lines():
        console.print(f"    {line}")
    done(f"ground truth → {summary_path.parent}/sent_*.parquet, {summary_path.name}")
    if report.unacked:
        raise CommandError(f"{len(report.unacked):,} frames were never acknowledged (is `askug ingest` running at {args.to}?); they are listed in {summary_path}")


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> None:
    with _open(settings, check=False) as store:
        before = store.schema_version()
        after = store.migrate()
        done(f"{store.describe()}: schema version {before} → {after}")


def cmd_load(args: argparse.Namespace, settings: Settings) -> None:
    from ingest import load_simulation

    with _open(settings) as store, step("load") as progress:
        summary = load_simulation(store, Path(args.path), progress=progress)
    done(_summary_line(summary))


def cmd_rollup(args: argparse.Namespace, settings: Settings) -> None:
    with _open(settings) as store, step("rollup"):
        store.refresh_rollups()
        days, months = store.count("daily_archive"), store.count("monthly_archive")
    done(f"{days:,} meter-days, {months:,} meter-months")


def cmd_cube(args: argparse.Namespace, settings: Settings) -> None:
    """Build the cube and the five-grouping gas-day cube (or refresh it incrementally)."""
    from dashboards._cli_analytics import cube_options, print_grouping
    from warehouse import build_cube, build_gas_cube, refresh_gas_cube

    start, end = cube_options(args)
    engine: Literal["duckdb", "polars"] = "polars" if getattr(args, "engine", None) == "polars" else "duckdb"
    with _open(settings) as store:
        if start is None:
            with step("cube"):
                summary = build_cube(store)
            done(f"{summary.rows:,} cube cells from {summary.hourly_rows:,} hourly values in {summary.seconds:.1f} s")
            with step("gas cube"):
                gas = build_gas_cube(store, engine=engine)
            done(f"gas-day cube, 5 groupings: {gas.cells:,} cells over {gas.gas_days} gas days "
                 f"from {gas.hourly_rows:,} hourly values in {gas.seconds:.1f} s ({gas.engine})")
        else:
            with step("gas cube"):
                gas = refresh_gas_cube(store, start=start, end=end, engine=engine)
            done(f"gas-day cube refreshed: {gas.gas_days} gas day(s) touched by {start:%Y-%m-%d} … "
                 f"{end:%Y-%m-%d} UTC, {gas.cells:,} cells rewritten from {gas.hourly_rows:,} hourly values "
                 f"in {gas.seconds:.1f} s (the company→branch→resource cube: run `askug cube` to rebuild it)")
        if getattr(args, "grouping", None):
            print_grouping(store, args)


def cmd_forecast(args: argparse.Namespace, settings: Settings) -> None:
    from forecasting import run_forecasts

    scenarios = getattr(args, "scenario", None) or ["observed"]
    incremental = not getattr(args, "full", False)
    with _open(settings) as store, step("forecast") as progress:
        frame = run_forecasts(
            store, horizon_hours=args.horizon, scenarios=scenarios, incremental=incremental, progress=progress
        )
    meters = frame.get_column("meter_id").n_unique() if frame.height else 0
    if frame.height == 0 and incremental:
        done("forecasts are up to date: no new data since the last run (use --full to recompute)")
        return
    done(
        f"{frame.height:,} hourly forecast/backcast values for {meters} metering points "
        f"under {len(scenarios)} scenario(s): {', '.join(scenarios)}"
    )


def cmd_detect(args: argparse.Namespace, settings: Settings) -> None:
    from anomalies import MqttSink, StoreSink, run_detection

    with _open(settings) as store, step("detect"):
        sinks: list[Any] = [StoreSink(store)]
        if args.mqtt:
            sinks.append(MqttSink(args.mqtt))
        alerts = run_detection(store, sinks=sinks)
    done(f"{alerts.height} GDP threshold alerts" + (f", published to {args.mqtt}" if args.mqtt else ""))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    from dashboards.app import create_app

    # The dashboard only reads: a read-only DuckDB file can be shared with other readers.
    store = _open(settings, read_only=True)
    app = create_app(store)
    console.print(f"[bold]askug dashboard[/bold] on http://{args.host}:{args.port}  (Ctrl+C to stop)")
    try:
        app.run(host=args.host, port=args.port, debug=False)
    finally:
        store.close()


def cmd_demo(args: argparse.Namespace, settings: Settings) -> None:
    workdir = Path(args.workdir)
    sim = workdir / "simulation"
    db = workdir / "askug.duckdb"
    if args.dsn or os.environ.get("ASKUG_DSN"):
        raise CommandError("the demo always uses its own embedded DuckDB file; drop --dsn/ASKUG_DSN for `askug demo`")
    started = time.perf_counter()
    # The demo owns its work folder: start from scratch so every run is reproducible.
    for path in (sim, db, Path(f"{db}.wal")):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    workdir.mkdir(parents=True, exist_ok=True)
    demo_settings = Settings(dsn=None, db=db)
    ns = argparse.Namespace
    console.print(f"[bold]askug demo[/bold]: {args.meters} metering points, {args.days} days from {args.start}, in {workdir}/")
    cmd_simulate(ns(meters=args.meters, start=args.start, days=args.days, seed=args.seed, no_faults=False, out=sim, force=True), demo_settings)
    cmd_migrate(ns(), demo_settings)
    cmd_load(ns(path=sim), demo_settings)
    # VEE (issue 4): validate the landed archive, store findings and estimates before rollups.
    from dashboards._cli_analytics import cmd_vee_run

    cmd_vee_run(ns(start=None, end=None, meter=None, user="vee", no_estimate=False), demo_settings)
    cmd_rollup(ns(), demo_settings)
    cmd_cube(ns(), demo_settings)
    cmd_forecast(ns(horizon=args.horizon), demo_settings)
    cmd_detect(ns(mqtt=args.mqtt), demo_settings)
    console.print(f"[bold green]pipeline finished in {time.perf_counter() - started:.0f} s[/bold green]")
    if not args.no_serve:
        cmd_serve(ns(host=args.host, port=args.port), demo_settings)


# --- parser ----------------------------------------------------------------------------
def _parse_date(text: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option} must be a date like 2022-01-01, got {text!r}") from None


def _summary_line(summary: Any) -> str:
    parts = ", ".join(f"{v:,} {k}" for k, v in summary.rows.items() if v)
    return f"stored {parts or 'nothing new'}; skipped {summary.duplicates_skipped:,} duplicates; {summary.seconds:.1f} s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="askug",
        description="askug: automated commercial gas metering — simulate, load, roll up, cube, forecast, detect, serve.",
    )
    parser.add_argument("--dsn", default=None, help="PostgreSQL connection string (or set ASKUG_DSN); default: the embedded DuckDB file")
    parser.add_argument("--db", default=None, help="embedded DuckDB file (or set ASKUG_DB; default ./askug.duckdb)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="simulate → load → vee → rollup → cube → forecast → detect, then serve the dashboard")
    _sim_options(p, meters=300, days=60, start="2022-01-01")
    p.add_argument("--workdir", default="askug-demo", help="folder for the demo's files (default ./askug-demo)")
    p.add_argument("--horizon", type=_positive_int, default=48, help="forecast horizon in hours (default 48)")
    p.add_argument("--mqtt", default=None, help="also publish alerts to this broker, e.g. mqtt://127.0.0.1:1883")
    p.add_argument("--no-serve", action="store_true", help="stop after the pipeline instead of serving the dashboard")
    _serve_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulate", help="write a seeded synthetic enterprise with telemetry and fault labels")
    _sim_options(p, meters=300, days=90, start="2022-01-01")
    p.add_argument("--out", default="askug-simulation", help="output folder (default ./askug-simulation)")
    p.add_argument("--no-faults", action="store_true", help="do not inject faults")
    p.add_argument("--no-inflow", action="store_true", help="do not write inflow.parquet (the GDPs' and stations' metered inflow)")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty output folder")
    # T: drive the simulated units over a real transport
    p.add_argument("--send", choices=["mqtt", "tcp", "udp"], default=None, help="then send the units' archives over this transport (to a running `askug ingest`)")
    p.add_argument("--to", default=None, metavar="HOST:PORT", help="ingest service (tcp/udp) or broker (mqtt) address, e.g. 127.0.0.1:5020")
    p.add_argument("--secrets", default=None, metavar="CSV", help="device_id,secret of the units (from `askug devices add --secrets-out`)")
    p.add_argument("--register", action="store_true", help="load the reference tables into the store (--dsn) and register the units; secrets go to OUT/secrets.csv")
    p.add_argument("--units", type=_positive_int, default=None, help="send only this many units (default all)")
    p.add_argument("--session-hours", type=_positive_int, default=24, help="hours of archive per session (default 24: daily sessions)")
    p.add_argument("--last-days", type=_positive_int, default=30, help="send only the last this many days (default 30: landing takes data up to 45 days late)")
    p.add_argument("--concurrency", type=_positive_int, default=8, help="sessions at a time (default 8)")
    p.add_argument("--clean", action="store_true", help="send without faults (no resends, corruption, replays, …)")
    p.add_argument("--mqtt-auth", action="store_true", help="log in to the broker as each unit (device id + secret)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("migrate", help="create or upgrade the store's schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("load", help="load a simulator output folder into the store (all or nothing)")
    p.add_argument("path", help="folder written by `askug simulate`")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("rollup", help="roll the hourly archive up to daily and monthly")
    p.set_defaults(func=cmd_rollup)

    p = sub.add_parser(
        "cube",
        help="build the company→branch→resource→year→month→day→hour cube and the five-grouping gas-day cube",
    )
    p.set_defaults(func=cmd_cube)

    p = sub.add_parser("forecast", help="fit the heating-degree model per metering point; store backcast and forecast")
    p.add_argument("--horizon", type=_positive_int, default=48, help="forecast horizon in hours (default 48)")
    p.add_argument(
        "--scenario",
        action="append",
        default=None,
        metavar="SCENARIO",
        help="temperature scenario of the horizon, repeatable (default observed): observed, normal, "
        "normal-5, observed+3, cold_snap:-25@2022-02-01+5d (on the normal year; add /observed for another base)",
    )
    p.add_argument(
        "--full", action="store_true", help="recompute every metering point, not only those with new data"
    )
    p.set_defaults(func=cmd_forecast)

    p = sub.add_parser("detect", help="run the GDP threshold rule and store alerts")
    p.add_argument("--mqtt", default=None, help="also publish alerts to this broker, e.g. mqtt://127.0.0.1:1883")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("serve", help="serve the dashboard")
    _serve_options(p)
    p.set_defaults(func=cmd_serve)

    # Command groups of the other packages live in their own modules (imported here,
    # after this module is complete, so they can use its helpers).
    from dashboards import _cli_analytics, _cli_ingest

    _cli_ingest.register(sub)
    _cli_analytics.register(sub)
    return parser


def _sim_options(p: argparse.ArgumentParser, *, meters: int, days: int, start: str) -> None:
    p.add_argument("--meters", type=int, default=meters, help=f"metering points, 10–100000 (default {meters})")
    p.add_argument("--days", type=int, default=days, help=f"days to simulate (default {days})")
    p.add_argument("--start", default=start, help=f"first day, 2011-01-01 … 2022-12 (default {start})")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")


def _serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _known_errors() -> tuple[type[BaseException], ...]:
    import analytics.errors
    import anomalies.errors
    import forecasting.errors
    import ingest.errors
    import warehouse.errors

    found: list[type[BaseException]] = [CommandError, warehouse.errors.WarehouseError, OSError]
    for module in (ingest.errors, forecasting.errors, anomalies.errors, analytics.errors):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == module.__name__:
                found.append(value)
    return tuple(found)


#: ``askug ingest`` commands that run a collection service.
SERVICE_COMMANDS: Final = frozenset({"serve", "mqtt", "tcp", "udp"})
#: Threads of polars' pool in a collection service (unless ``POLARS_MAX_THREADS`` is set).
SERVICE_POLARS_THREADS: Final = 1


def _service_env(argv: Sequence[str]) -> None:
    """Before anything imports polars: a collection service runs polars on one thread.

    Polars reads ``POLARS_MAX_THREADS`` once, when it is first imported (building the
    parser already imports it).  A landing round's frames are a few ten thousand rows;
    a pool on every core gains little on them and takes CPU from PostgreSQL, the other
    half of the service (see ``ingest/README.md``, *Polars on one thread*).
    """
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    pre.add_argument("--dsn")
    pre.add_argument("--db")
    pre.add_argument("-v", "--verbose", action="store_true")
    pre.add_argument("words", nargs=argparse.REMAINDER)
    try:
        words = pre.parse_known_args(list(argv))[0].words
    except argparse.ArgumentError:
        return  # the real parser reports it
    if len(words) >= 2 and words[0] == "ingest" and words[1] in SERVICE_COMMANDS:
        os.environ.setdefault("POLARS_MAX_THREADS", str(SERVICE_POLARS_THREADS))


def main(argv: Sequence[str] | None = None) -> int:
    _service_env(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if args.verbose else "  ! %(message)s",
    )
    settings = Settings.from_args(args)
    try:
        args.func(args, settings)
    except KeyboardInterrupt:
        console.print("askug: interrupted")
        return 130
    except _known_errors() as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        console.print(f"[red]askug: error:[/red] {message}", soft_wrap=True)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this ``__main__`` copy: the command modules
    # (``_cli_ingest``, ``_cli_analytics``) raise ``dashboards.cli.CommandError``, which
    # must be the class ``main`` catches.
    from dashboards.cli import main as _main

    sys.exit(_main())
