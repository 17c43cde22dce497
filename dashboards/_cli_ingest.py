"""``askug ingest …`` and ``askug quarantine …``: the telemetry collection services.

Registered into the main parser by :func:`dashboards.cli.build_parser`; commands use the
helpers of :mod:`dashboards.cli` (``Settings``, ``step``, ``done``, ``CommandError``).

``askug ingest`` is one command group shared by two blocks below: landing's
``ingest stats`` (block L) and the transports' ``ingest mqtt|tcp|udp|serve`` (block T).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add this module's sub-commands to the ``askug`` parser's sub-parsers ``sub``."""
    ingest = sub.add_parser("ingest", help="telemetry collection: transports and landing statistics")
    ingest_sub = ingest.add_subparsers(dest="ingest_command", required=True, metavar="COMMAND")
    _register_l(sub, ingest_sub)
    _register_t(sub, ingest_sub)
    _register_p(sub)


# --- L: landing/quarantine/scheduler ---------------------------------------------------------
def _register_l(sub: Any, ingest_sub: Any) -> None:
    """``ingest stats``, ``quarantine``, ``devices``, ``schedule`` and ``downlink``."""
    p = ingest_sub.add_parser("stats", help="packets received = stored + duplicates + quarantined, by transport and reason")
    p.add_argument("--since", default=None, help="only packets received on or after this UTC day (YYYY-MM-DD)")
    p.set_defaults(func=cmd_ingest_stats)

    q = sub.add_parser("quarantine", help="packets landing could not store: list, show, reprocess")
    qs = q.add_subparsers(dest="quarantine_command", required=True, metavar="COMMAND")
    p = qs.add_parser("list", help="quarantined packets, oldest first")
    p.add_argument("--reason", default=None, help="only this reason (bad_crc, truncated, oversized, unknown_device, …)")
    p.add_argument("--device", default=None, help="only this device id")
    p.add_argument("--all", action="store_true", help="include packets already reprocessed")
    p.add_argument("--limit", type=_positive, default=50, help="at most this many rows (default 50)")
    p.set_defaults(func=cmd_quarantine_list)
    p = qs.add_parser("show", help="one quarantined packet with its bytes")
    p.add_argument("sha", help="sha256 of the packet (at least 6 leading hex digits)")
    p.set_defaults(func=cmd_quarantine_show)
    p = qs.add_parser("reprocess", help="run quarantined packets again through the current profiles")
    p.add_argument("--reason", default=None, help="only packets quarantined for this reason")
    p.add_argument("--sha", action="append", default=None, help="only this packet (full sha256), repeatable")
    p.add_argument("--limit", type=_positive, default=None, help="at most this many, oldest first")
    p.add_argument("--profiles", action="append", default=[], metavar="DIR", help="extra profile folder, repeatable")
    p.add_argument("--late-window-days", type=_positive, default=45, help="late-data window in days (default 45)")
    p.add_argument("--clock-flag-s", type=_positive, default=4 * 3600, help="largest clock offset still stored, s (default 14400)")
    p.add_argument("--batch", type=_positive, default=5000, help="packets per transaction (default 5000)")
    p.set_defaults(func=cmd_quarantine_reprocess)

    d = sub.add_parser("devices", help="register telemetry units (credentials) and list them")
    ds = d.add_subparsers(dest="devices_command", required=True, metavar="COMMAND")
    p = ds.add_parser("add", help="register units; each secret is printed once, only its hash is stored")
    p.add_argument("device_ids", nargs="*", metavar="DEVICE_ID", help="units to register (e.g. D0000123)")
    p.add_argument("--all", action="store_true", help="register every unit of the devices table not yet registered")
    p.add_argument("--profile", default=None, help="device profile (default with --all: by kind, the shipped profiles)")
    p.add_argument("--kind", default=None, choices=["household_unit", "corrector", "gdp_unit"], help="kind, if the devices table does not know the unit")
    p.add_argument("--group", default="default", help="session-schedule group (default 'default')")
    p.add_argument("--rotate", action="store_true", help="issue new secrets to units already registered")
    p.add_argument("--secrets-out", default=None, metavar="CSV", help="write device_id,secret to this new file (mode 600) instead of printing")
    p.add_argument("--cost", type=_positive, default=None, help="scrypt cost n, a power of two (default 4096)")
    p.set_defaults(func=cmd_devices_add)
    p = ds.add_parser("list", help="registered units with their last contact")
    p.add_argument("--group", default=None, help="only this group")
    p.set_defaults(func=cmd_devices_list)

    sc = sub.add_parser("schedule", help="communication-session schedules of device groups, with diversity")
    ss = sc.add_subparsers(dest="schedule_command", required=True, metavar="COMMAND")
    p = ss.add_parser("add", help="add a schedule to a group (checks the concurrency bound)")
    p.add_argument("group", help="device group")
    p.add_argument("spec", help="daily@HH:MM | weekly:D@HH:MM (D 1=Mon…7) | monthly:N@HH:MM (N 1–28) | once:YYYY-MM-DDTHH:MMZ (UTC)")
    p.add_argument("--window", default="4h", help="window the units are spread over (default 4h; s, m, h, d)")
    p.add_argument("--session", default="90s", help="expected length of one session (default 90s)")
    p.add_argument("--max-concurrent", type=_positive, required=True, help="bound on concurrent sessions")
    p.add_argument("--spread", choices=["even", "hash"], default="even", help="even (least peak, default) or hash (stable per unit)")
    p.set_defaults(func=cmd_schedule_add)
    p = ss.add_parser("show", help="a group's schedules, peak concurrency and (with --histogram) its shape")
    p.add_argument("group", help="device group")
    p.add_argument("--histogram", action="store_true", help="print a text histogram of concurrent sessions")
    p.add_argument("--bins", type=_positive, default=24, help="histogram bins (default 24)")
    p.add_argument("--device", default=None, help="also list this unit's sessions in the next 7 days")
    p.set_defaults(func=cmd_schedule_show)
    p = ss.add_parser("remove", help="remove one schedule of a group")
    p.add_argument("group", help="device group")
    p.add_argument("schedule_id", help="the schedule, as `schedule show` prints it (e.g. daily@02:00)")
    p.set_defaults(func=cmd_schedule_remove)

    dl = sub.add_parser("downlink", help="commands to units, delivered at their next session")
    dls = dl.add_subparsers(dest="downlink_command", required=True, metavar="COMMAND")
    p = dls.add_parser("send", help="queue a command for a unit")
    p.add_argument("device_id", help="the unit")
    p.add_argument("kind", choices=["schedule", "valve", "gas_parameters", "firmware"], help="command")
    p.add_argument("--action", choices=["close", "open"], default=None, help="valve: close or open (household units)")
    p.add_argument("--density", type=float, default=None, help="gas_parameters: standard density, kg/m³")
    p.add_argument("--co2", type=float, default=None, help="gas_parameters: CO2, mol %%")
    p.add_argument("--n2", type=float, default=None, help="gas_parameters: N2, mol %%")
    p.add_argument("--version", default=None, help="firmware: version to install")
    p.add_argument("--url", default=None, help="firmware: where the unit fetches it")
    p.set_defaults(func=cmd_downlink_send)
    p = dls.add_parser("list", help="commands and their delivery/acknowledgement")
    p.add_argument("--device", default=None, help="only this unit")
    p.add_argument("--status", choices=["queued", "delivered", "acknowledged", "cancelled"], default=None)
    p.set_defaults(func=cmd_downlink_list)
    p = dls.add_parser("cancel", help="cancel a command that was not acknowledged")
    p.add_argument("command_id", type=int, help="command id")
    p.set_defaults(func=cmd_downlink_cancel)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _seconds(text: str, option: str) -> int:
    from dashboards.cli import CommandError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise CommandError(f"{option} must be a duration like 90s, 30m, 4h or 1d, got {text!r}") from None


def _table(frame: Any) -> None:
    """Print a frame as aligned text on stdout (all rows)."""
    import polars as pl

    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(frame)


def cmd_ingest_stats(args: argparse.Namespace, settings: Any) -> None:
    from dashboards.cli import _open, _parse_date
    from ingest._stats import read_stats

    since = _parse_date(args.since, "--since") if args.since else None
    with _open(settings, read_only=True) as store:
        stats = read_stats(store, since=since)
    for line in stats.lines():
        print(line)


def cmd_quarantine_list(args: argparse.Namespace, settings: Any) -> None:
    from dashboards.cli import _open
    from ingest._quarantine import list_quarantine

    with _open(settings, read_only=True) as store:
        rows = list_quarantine(
            store, reason=args.reason, device_id=args.device, include_reprocessed=args.all, limit=args.limit
        )
    if rows.height == 0:
        print("quarantine is empty" if not (args.reason or args.device) else "no quarantined packets match")
        return
    _table(rows.with_columns(rows["sha256"].str.slice(0, 12)))


def cmd_quarantine_show(args: argparse.Namespace, settings: Any) -> None:
    from dashboards.cli import _open
    from ingest._quarantine import hexdump, show_quarantine

    with _open(settings, read_only=True) as store:
        row = show_quarantine(store, args.sha)
    raw = bytes.fromhex(str(row.pop("raw_hex")))
    for key, value in row.items():
        print(f"{key:<15} {value if value is not None else '-'}")
    print(f"{'size':<15} {len(raw)} bytes")
    for line in hexdump(raw):
        print(line)


def cmd_quarantine_reprocess(args: argparse.Namespace, settings: Any) -> None:
    import datetime as dt

    from dashboards.cli import _open, done, step
    from ingest._device_profiles import ProfileRegistry
    from ingest._landing import EdgePolicy, Landing
    from ingest._quarantine import list_quarantine

    policy = EdgePolicy(late_window=dt.timedelta(days=args.late_window_days), clock_flag_s=float(args.clock_flag_s))
    with _open(settings) as store:
        landing = Landing(store, ProfileRegistry(args.profiles), policy)
        todo = list_quarantine(store, reason=args.reason, limit=args.limit)
        shas = todo["sha256"].to_list()
        if args.sha:
            wanted = set(args.sha)
            shas = [s for s in shas if s in wanted]
        stored = 0
        still: dict[str, int] = {}
        with step("reprocess") as progress:
            for i in range(0, len(shas), args.batch):
                summary = landing.reprocess(shas=shas[i : i + args.batch])
                stored += summary.stored
                for k, v in summary.still_quarantined.items():
                    still[k] = still.get(k, 0) + v
                progress(min(i + args.batch, len(shas)), len(shas))
    rest = ", ".join(f"{v:,} {k}" for k, v in sorted(still.items())) or "none"
    done(f"reprocessed {len(shas):,} packets: {stored:,} stored, still quarantined: {rest}")


def cmd_devices_add(args: argparse.Namespace, settings: Any) -> None:
    import os

    from dashboards.cli import CommandError, _open, done, step
    from ingest._security import SCRYPT_N, DeviceRegistration, register_devices

    profile_by_kind = {"household_unit": "household-nb", "corrector": "corrector-ek", "gdp_unit": "gdp-telemetry"}
    with _open(settings) as store:
        ids = list(args.device_ids)
        kinds: dict[str, str] = {}
        if args.all:
            ref = store.read("devices", columns=["device_id", "kind"])
            have = set(store.read("device_credentials", columns=["device_id"])["device_id"].to_list())
            for d, k in ref.iter_rows():
                if d not in have and d not in ids:
                    ids.append(d)
                    kinds[d] = k
        if not ids:
            raise CommandError("name the units to register, or pass --all to register the devices table")
        if args.profile is None and not kinds:
            raise CommandError("give the units' device profile with --profile (e.g. household-nb)")
        regs = [
            DeviceRegistration(
                device_id=d,
                profile=args.profile or profile_by_kind.get(kinds.get(d, ""), ""),
                kind=args.kind,
                group=args.group,
            )
            for d in ids
        ]
        out = None
        if args.secrets_out:
            try:
                fd = os.open(args.secrets_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise CommandError(f"{args.secrets_out} exists; choose a new file for the secrets") from None
            out = os.fdopen(fd, "w", encoding="utf-8")
        try:
            with step("register"):
                secrets = register_devices(store, regs, rotate=args.rotate, cost=args.cost or SCRYPT_N)
            if out is not None:
                out.write("device_id,secret\n")
                out.writelines(f"{d},{s}\n" for d, s in secrets.items())
            else:
                for d, s in secrets.items():
                    print(f"{d} {s}")
        finally:
            if out is not None:
                out.close()
    where = f"written to {args.secrets_out}" if args.secrets_out else "printed above"
    done(f"registered {len(secrets):,} units in group {args.group!r}; secrets {where} (shown once, only hashes are stored)")


def cmd_devices_list(args: argparse.Namespace, settings: Any) -> None:
    from dashboards.cli import _open
    from ingest._security import list_devices

    with _open(settings, read_only=True) as store:
        rows = list_devices(store, group=args.group)
    if rows.height == 0:
        print("no registered units" + (f" in group {args.group!r}" if args.group else ""))
        return
    _table(rows)


def cmd_schedule_add(args: argparse.Namespace, settings: Any) -> None:
    from dashboards.cli import _open, done
    from ingest._scheduler import parse_schedule, save_schedule

    schedule = parse_schedule(
        args.group,
        args.spec,
        window_s=_seconds(args.window, "--window"),
        session_s=_seconds(args.session, "--session"),
        max_concurrent=args.max_concurrent,
        spread=args.spread,
    )
    with _open(settings) as store:
        plan = save_schedule(store, schedule)
    assert plan is not None
    done(f"group {args.group!r}: {schedule.schedule_id} saved; {plan.units:,} units, peak {plan.peak:,} concurrent (bound {schedule.max_concurrent:,})")


def cmd_schedule_show(args: argparse.Namespace, settings: Any) -> None:
    import datetime as dt

    from dashboards.cli import CommandError, _open
    from ingest._scheduler import group_devices, load_schedules, next_sessions, plan_sessions

    with _open(settings, read_only=True) as store:
        schedules = load_schedules(store, args.group)
        members = group_devices(store, args.group)
    if not schedules:
        raise CommandError(f"group {args.group!r} has no schedule; add one with `askug schedule add {args.group} daily@02:00 --max-concurrent N`")
    plans = []
    for s in schedules:
        plan = plan_sessions(s, members)
        plans.append(plan)
        if args.histogram:
            for line in plan.histogram_lines(bins=args.bins):
                print(line)
        else:
            print(plan.histogram_lines(bins=1)[0])
    if args.device:
        now = dt.datetime.now(dt.UTC)
        times = next_sessions(args.device, plans, start=now, end=now + dt.timedelta(days=7))
        if args.device not in members:
            raise CommandError(f"device {args.device} is not in group {args.group!r}")
        print(f"{args.device}: " + (", ".join(t.strftime("%Y-%m-%d %H:%M:%SZ") for t in times) or "no session in the next 7 days"))


def cmd_schedule_remove(args: argparse.Namespace, settings: Any) -> None:
    from dashboards.cli import CommandError, _open, done
    from ingest._scheduler import remove_schedule

    with _open(settings) as store:
        if not remove_schedule(store, args.group, args.schedule_id):
            raise CommandError(f"group {args.group!r} has no schedule {args.schedule_id!r}; see `askug schedule show {args.group}`")
    done(f"group {args.group!r}: {args.schedule_id} removed")


def cmd_downlink_send(args: argparse.Namespace, settings: Any) -> None:
    from dashboards.cli import _open, done
    from ingest._downlink import queue_command
    from ingest._scheduler import schedule_payload

    payload: dict[str, Any] = {}
    with _open(settings) as store:
        if args.kind == "valve":
            payload = {"action": args.action}
        elif args.kind == "gas_parameters":
            payload = {
                k: v
                for k, v in (("density_kg_m3", args.density), ("co2_mol_pct", args.co2), ("n2_mol_pct", args.n2))
                if v is not None
            }
        elif args.kind == "firmware":
            payload = {"version": args.version, "url": args.url}
        else:
            payload = schedule_payload(store, args.device_id)
        command = queue_command(store, args.device_id, args.kind, payload)
    done(f"command {command.command_id} ({command.kind}) queued for {command.device_id}; it goes out at the unit's next session")


def cmd_downlink_list(args: argparse.Namespace, settings: Any) -> None:
    from dashboards.cli import _open
    from ingest._downlink import commands_frame, list_commands

    with _open(settings, read_only=True) as store:
        rows = commands_frame(list_commands(store, device_id=args.device, status=args.status))
    if rows.height == 0:
        print("no commands match")
        return
    _table(rows)


def cmd_downlink_cancel(args: argparse.Namespace, settings: Any) -> None:
    from dashboards.cli import CommandError, _open, done
    from ingest._downlink import cancel_command

    with _open(settings) as store:
        if not cancel_command(store, args.command_id):
            raise CommandError(f"command {args.command_id} is not pending (unknown, acknowledged or cancelled); see `askug downlink list`")
    done(f"command {args.command_id} cancelled")


# --- P: archive files ------------------------------------------------------------------------
def _register_p(sub: Any) -> None:
    """``import-archive``: CSV/XLSX corrector archive exports through a column mapping."""
    p = sub.add_parser(
        "import-archive",
        help="load a CSV/XLSX corrector archive export (hourly, daily, events) through a column mapping",
        description="Read FILE through the TOML column mapping M, store the good rows (hourly_archive, "
        "device_daily_archive, readings, events) in one transaction and list the bad rows by line number. "
        "Rows already stored are skipped, so importing a file twice is harmless.",
    )
    p.add_argument("file", metavar="FILE", help="the export (.csv/.txt or .xlsx)")
    p.add_argument("--mapping", required=True, metavar="M", help="column-mapping TOML (see ingest/examples/pollsoft-csv.toml)")
    p.add_argument("--device", default=None, help="the device the whole file belongs to (overrides the mapping)")
    p.add_argument("--dry-run", action="store_true", help="read and report, store nothing")
    p.add_argument("--max-errors", type=_positive, default=50, help="print at most this many bad rows (default 50)")
    p.set_defaults(func=cmd_import_archive)


def cmd_import_archive(args: argparse.Namespace, settings: Any) -> None:
    """Import one archive export; bad rows are printed with their line numbers."""
    from pathlib import Path

    from dashboards.cli import CommandError, _open, console, done, step
    from ingest._archive_files import load_archive_mapping, read_archive_file, write_archive_import

    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    mapping = load_archive_mapping(args.mapping)
    with _open(settings, read_only=args.dry_run) as store:
        ref = store.read("devices", columns=["device_id", "meter_id"])
        devices = dict(zip(ref["device_id"].to_list(), ref["meter_id"].to_list(), strict=True))
        with step("read"):
            result = read_archive_file(path, mapping, devices=devices, device_id=args.device)
        written: dict[str, int] = {}
        if not args.dry_run and result.tables():
            with step("store"):
                written = write_archive_import(store, result)
    for err in result.errors[: args.max_errors]:
        console.print(f"  [red]✗[/red] {path.name}: {err}", highlight=False)
    if len(result.errors) > args.max_errors:
        console.print(f"  … and {len(result.errors) - args.max_errors:,} more bad rows", highlight=False)
    if args.dry_run:
        found = ", ".join(f"{v.height:,} {k}" for k, v in result.tables().items()) or "nothing"
        done(f"{result.good_rows:,} of {result.rows:,} rows readable ({found}); dry run, nothing stored")
    else:
        stored = ", ".join(f"{v:,} {k}" for k, v in written.items()) or "nothing new"
        done(f"{result.good_rows:,} of {result.rows:,} rows loaded: {stored} stored; {len(result.errors):,} bad rows")
    if result.rows and not result.good_rows:
        raise CommandError(f"{path}: no row could be read; check the mapping {args.mapping}")


# --- T: transports ---------------------------------------------------------------------------
def _register_t(sub: Any, ingest_sub: Any) -> None:
    """``ingest mqtt|tcp|udp|serve|broker-config`` (sub-parsers of ``ingest_sub``)."""
    _ = sub
    p = ingest_sub.add_parser("serve", help="run the MQTT, TCP and UDP collection services in one process")
    p.add_argument("--mqtt", default=None, metavar="URL", help="broker, mqtt://user:password@host:1883 (default: no MQTT)")
    p.add_argument("--tcp-port", type=int, default=5020, help="TCP port (default 5020; 0 = off)")
    p.add_argument("--udp-port", type=int, default=5021, help="UDP port (default 5021; 0 = off)")
    _t_common(p)
    p.set_defaults(func=cmd_ingest_serve, t_mode="serve")
    p = ingest_sub.add_parser("mqtt", help="run the MQTT collection service (persistent QoS 1 subscriber, ack after commit)")
    p.add_argument("--url", default="mqtt://127.0.0.1:1883", help="broker, mqtt://user:password@host:1883 (default mqtt://127.0.0.1:1883)")
    _t_common(p)
    p.set_defaults(func=cmd_ingest_serve, t_mode="mqtt")
    p = ingest_sub.add_parser("tcp", help="run the TCP collection service (ident + length-prefixed frames)")
    p.add_argument("--port", type=int, default=5020, help="port (default 5020)")
    _t_common(p)
    p.set_defaults(func=cmd_ingest_serve, t_mode="tcp")
    p = ingest_sub.add_parser("udp", help="run the UDP collection service (one frame per datagram)")
    p.add_argument("--port", type=int, default=5021, help="port (default 5021)")
    _t_common(p)
    p.set_defaults(func=cmd_ingest_serve, t_mode="udp")
    p = ingest_sub.add_parser("broker-config", help="write the Mosquitto password file and per-device ACL from the registry")
    p.add_argument("--secrets", required=True, metavar="CSV", help="device_id,secret file (from `askug devices add --secrets-out`)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for `passwords` and `acl`")
    p.add_argument("--ingest-user", default="askug-ingest", help="broker user of the ingest service (default askug-ingest)")
    p.add_argument(
        "--ingest-password-env", default="ASKUG_MQTT_PASSWORD", metavar="VAR",
        help="environment variable holding that user's password (default ASKUG_MQTT_PASSWORD)",
    )  # fmt: skip
    p.set_defaults(func=cmd_broker_config)


def _t_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="0.0.0.0", help="address TCP/UDP listen on (default 0.0.0.0)")
    p.add_argument("--profiles", action="append", default=[], metavar="DIR", help="extra device-profile folder, re-read while running; repeatable")
    p.add_argument("--client-id", default="askug-ingest", help="MQTT client id = the persistent session's name (default askug-ingest)")
    p.add_argument("--idle-timeout", type=float, default=60.0, help="close TCP sessions idle this long, s (default 60)")
    p.add_argument("--max-frame-bytes", type=_positive, default=4096, help="largest frame, bytes (default 4096)")
    p.add_argument("--rate", type=_positive, default=600, help="frames per minute per device (default 600)")
    p.add_argument("--batch", type=_positive, default=20000, help="most packets per commit (default 20000)")
    p.add_argument(
        "--writers", type=_positive, default=None, metavar="N",
        help="landing writers, each with its own database connection (default 2 on PostgreSQL, 1 on DuckDB)",
    )  # fmt: skip
    p.add_argument(
        "--writer-mode", choices=["process", "thread"], default=None,
        help="run each landing writer in a process of its own (default on PostgreSQL) or as a thread of the service (DuckDB)",
    )  # fmt: skip
    p.add_argument("--no-downlink", action="store_true", help="do not deliver queued downlink commands")
    p.add_argument("--log-format", choices=["kv", "json"], default="kv", help="structured log lines: key=value (default) or JSON")
    p.add_argument("--stats-every", type=float, default=30.0, help="log the counters every this many seconds (default 30)")


def cmd_ingest_serve(args: argparse.Namespace, settings: Any) -> None:
    """Run the collection services until SIGTERM/SIGINT; then commit, acknowledge and exit."""
    import logging

    from dashboards.cli import CommandError, _open, console
    from ingest._landing import EdgePolicy
    from ingest._transports import (
        MqttConfig,
        ServiceConfig,
        TcpConfig,
        UdpConfig,
        configure_logging,
    )
    from ingest._transports.mqtt import parse_mqtt_url
    from ingest._transports.service import open_service

    mode = args.t_mode
    downlink = not args.no_downlink
    tcp_port = args.tcp_port if mode == "serve" else (args.port if mode == "tcp" else 0)
    udp_port = args.udp_port if mode == "serve" else (args.port if mode == "udp" else 0)
    mqtt_url = args.mqtt if mode == "serve" else (args.url if mode == "mqtt" else None)
    for name, port in (("TCP", tcp_port), ("UDP", udp_port)):
        if not 0 <= port <= 65535:
            raise CommandError(f"{name} port {port} is not 0–65535; pick a free port")
    if mqtt_url:
        parse_mqtt_url(mqtt_url)  # a bad URL is a one-line error before anything starts
    if not (tcp_port or udp_port or mqtt_url):
        raise CommandError("nothing to serve: give --mqtt, --tcp-port or --udp-port")
    config = ServiceConfig(
        mqtt=MqttConfig(url=mqtt_url, client_id=args.client_id, downlink=downlink, max_batch=args.batch) if mqtt_url else None,
        tcp=TcpConfig(
            host=args.host, port=tcp_port, idle_timeout_s=args.idle_timeout, max_frame_bytes=args.max_frame_bytes,
            frames_per_minute=args.rate, downlink=downlink,
        ) if tcp_port else None,
        udp=UdpConfig(
            host=args.host, port=udp_port, max_frame_bytes=args.max_frame_bytes, frames_per_minute=args.rate, downlink=downlink,
        ) if udp_port else None,
        max_batch=args.batch,
        stats_every_s=args.stats_every,
        writers=args.writers,
        writer_processes=None if args.writer_mode is None else args.writer_mode == "process",
    )  # fmt: skip
    configure_logging(style=args.log_format, level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)
    policy = EdgePolicy(max_frame_bytes=args.max_frame_bytes, max_frames_per_minute=args.rate)
    with _open(settings) as store:
        service = open_service(store, config, profile_dirs=args.profiles, policy=policy)
        writers = service.worker.writers
        where = " (processes)" if service.config.writer_processes else ""
        console.print(
            f"[bold]askug ingest {mode}[/bold] on {store.describe()}, {writers} landing writer{'s' if writers > 1 else ''}"
            f"{where} (SIGTERM/Ctrl+C stops gracefully)"
        )
        stats = service.run()
    console.print(
        f"  stopped: {stats.packets:,} packets, {stats.stored:,} stored, {stats.duplicates:,} duplicates, "
        f"{stats.quarantined:,} quarantined, {stats.acked:,} acknowledged"
    )


def cmd_broker_config(args: argparse.Namespace, settings: Any) -> None:
    """Write Mosquitto's password file and ACL for every registered unit."""
    import os

    from dashboards.cli import CommandError, _open, done
    from ingest._transports.broker import read_secrets_csv, write_broker_auth

    password = os.environ.get(args.ingest_password_env)
    if not password:
        raise CommandError(f"set the ingest user's broker password in ${args.ingest_password_env} (or name another variable with --ingest-password-env)")
    secrets = read_secrets_csv(args.secrets)
    with _open(settings) as store:
        registered = store.read("device_credentials", columns=["device_id"])["device_id"].to_list()
    known = [d for d in registered if d in secrets]
    skipped = len(registered) - len(known)
    auth = write_broker_auth(args.out, secrets, ingest_user=args.ingest_user, ingest_password=password, devices=known)
    note = f"; {skipped:,} registered units have no secret in {args.secrets} and get no broker account" if skipped else ""
    done(f"{auth.devices:,} units + {args.ingest_user} → {auth.password_file} and {auth.acl_file}{note}")
