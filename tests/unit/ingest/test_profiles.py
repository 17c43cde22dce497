"""Device profiles: loading, validation messages, the live registry, server frames."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import pytest

from ingest import (
    SHIPPED_PROFILES,
    Frame,
    FrameError,
    ProfileError,
    ProfileRegistry,
    Reason,
    decode_server,
    load_profile,
)

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)

NEW_PROFILE = """
name = "water-pulse"
code = 0x2121
device_kind = "household_unit"
crc = "crc16-ccitt"
device_id_format = "W{serial:06d}"

[events]
1 = { code = "tamper_magnet", severity = "critical", text = "magnet" }

[[frames]]
type = 1
kind = "archive"
interval_s = 3600
prefix = [ { name = "start", offset = 0, type = "u32", role = "ts" } ]
fields = [
  { name = "reg", offset = 0, type = "u32", scale = %(scale)s, missing = 0xFFFFFFFF, channel = "volume_register_m3", unit = "m3" },
  { name = "bat", offset = 4, type = "u16", scale = 0.001, missing = 0xFFFF, channel = "battery_voltage_v" },
]

[[frames]]
type = 0x10
kind = "ident"
body = "secret"
"""


def _raw_new_profile(values: list[int]) -> bytes:
    """A frame of the 'water-pulse' device type, built by hand (no profile needed)."""
    import struct

    from ingest._crc import crc

    start = int(T0.timestamp())
    body = struct.pack(">I", start) + b"".join(struct.pack(">IH", v, 3600) for v in values)
    head = struct.pack(">BHIIIBH", 1, 0x2121, 77, 5, start + 7200, 1, len(body))
    return head + body + crc("crc16-ccitt", head + body)


def _touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_shipped_profiles_load() -> None:
    reg = ProfileRegistry()
    assert reg.names() == ["corrector-ek", "gdp-telemetry", "household-nb", "mqtt-json"]
    assert reg.problems() == {}
    kinds = {n: reg.profile(n).device_kind for n in reg.names()}
    assert kinds == {"corrector-ek": "corrector", "gdp-telemetry": "gdp_unit",
                     "household-nb": "household_unit", "mqtt-json": "corrector"}  # fmt: skip
    assert reg.profile("household-nb").counter_modulus_m3 == 100000.0


def test_a_new_profile_file_is_picked_up_by_a_running_registry(tmp_path: Path) -> None:
    reg = ProfileRegistry([tmp_path], rescan_s=3600.0)  # only the on-demand check can find it
    raw = _raw_new_profile([1234567, 1235000])
    with pytest.raises(FrameError) as err:
        reg.decode(raw)
    assert err.value.reason is Reason.UNKNOWN_PROFILE
    assert "0x2121" in err.value.detail

    (tmp_path / "water-pulse.toml").write_text(NEW_PROFILE % {"scale": "0.001"})
    import time

    time.sleep(0.12)  # on-demand rescans are rate-limited to 10/s
    frame = reg.decode(raw)
    assert frame.profile == "water-pulse" and frame.device_id == "W000077" and frame.counter == 5
    assert sorted(frame.readings) == [
        ("battery_voltage_v", T0, 3.6),
        ("battery_voltage_v", T0 + dt.timedelta(hours=1), 3.6),
        ("volume_register_m3", T0, 1234.567),
        ("volume_register_m3", T0 + dt.timedelta(hours=1), 1235.0),
    ]
    assert "water-pulse" in reg.names()

    # the file changes (a corrected scale): the next refresh decodes with it
    path = tmp_path / "water-pulse.toml"
    path.write_text(NEW_PROFILE % {"scale": "0.01"})
    _touch_later(path)
    assert reg.refresh() is True
    assert ("volume_register_m3", T0, 12345.67) in reg.decode(raw).readings

    # removing the file retires the device type
    path.unlink()
    assert reg.refresh() is True
    with pytest.raises(FrameError, match="0x2121"):
        reg.decode(raw)


def test_periodic_rescan_without_a_decode_miss(tmp_path: Path) -> None:
    reg = ProfileRegistry([tmp_path], rescan_s=0.0)
    (tmp_path / "water-pulse.toml").write_text(NEW_PROFILE % {"scale": "0.001"})
    assert reg.decode(_raw_new_profile([5])).profile == "water-pulse"


def test_a_bad_profile_file_is_reported_and_does_not_break_the_others(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text(NEW_PROFILE.replace('type = "u16"', 'type = "u17"') % {"scale": "0.001"})
    reg = ProfileRegistry([tmp_path])
    assert reg.names() == ["corrector-ek", "gdp-telemetry", "household-nb", "mqtt-json"]
    problems = reg.problems()
    assert list(problems) == [bad]
    assert str(bad) in problems[bad] and "'u17'" in problems[bad] and "fields[1] ('bat')" in problems[bad]


def test_a_good_file_that_turns_bad_keeps_its_last_good_version(tmp_path: Path) -> None:
    path = tmp_path / "water-pulse.toml"
    path.write_text(NEW_PROFILE % {"scale": "0.001"})
    reg = ProfileRegistry([tmp_path], rescan_s=3600.0)
    path.write_text("name = [unclosed")
    _touch_later(path)
    reg.refresh()
    assert "water-pulse" in reg.names()
    assert "not valid TOML" in reg.problems()[path]
    assert reg.decode(_raw_new_profile([5])).profile == "water-pulse"


def test_a_clashing_profile_is_refused(tmp_path: Path) -> None:
    text = (SHIPPED_PROFILES / "household-nb.toml").read_text()
    (tmp_path / "copy.toml").write_text(text)
    reg = ProfileRegistry([tmp_path])
    msg = reg.problems()[tmp_path / "copy.toml"]
    assert "already used by" in msg and "household-nb.toml" in msg
    assert reg.profile("household-nb").source == SHIPPED_PROFILES / "household-nb.toml"


BASE = NEW_PROFILE % {"scale": "0.001"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.replace('crc = "crc16-ccitt"', 'crc = "crc8"'), "crc: 'crc8' is not one of"),
        (lambda s: s.replace("scale = 0.001, missing = 0xFFFF,", "sacle = 0.001, missing = 0xFFFF,"),
         "unknown key 'sacle'"),
        (lambda s: s.replace('channel = "battery_voltage_v"', 'channel = "battery_v"'),
         "channel 'battery_v' is not one of"),
        (lambda s: s.replace("offset = 4, type", "offset = 2, type"), "overlap"),
        (lambda s: s.replace('unit = "m3"', 'unit = "kPa"'), "unit 'kPa' does not match"),
        (lambda s: s.replace("interval_s = 3600\n", ""), "give interval_s > 0"),
        (lambda s: s.replace('device_kind = "household_unit"', 'device_kind = "toaster"'),
         "device_kind: 'toaster' is not one of"),
        (lambda s: s.replace("code = 0x2121", "code = 0"), "code: 0 must be 1..65535"),
        (lambda s: s.replace("type = 0x10", "type = 1"), "frame type 1 is declared twice"),
        (lambda s: s.replace("missing = 0xFFFF,", "missing = 70000,"), "missing 70000 is not a u16 value"),
        (lambda s: s.replace('severity = "critical"', 'severity = "panic"'), "severity 'panic'"),
        (lambda s: s.replace('"W{serial:06d}"', '"W{serial:06f}"'), "device_id_format"),
        (lambda s: s + "\n[[frames]]\ntype = 0x80\nkind = 'x'\nbody = 'secret'\n", "not 0x80/0x81"),
    ],
)
def test_invalid_profiles_name_the_file_and_the_problem(tmp_path: Path, edit: object, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(edit(BASE))  # type: ignore[operator]
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    text = str(err.value)
    assert text.startswith(f"device profile {path}: ")
    assert message in text, text
    assert "\n" not in text


def test_missing_profile_file() -> None:
    with pytest.raises(ProfileError, match="cannot read it"):
        load_profile("/nonexistent/p.toml")


def test_profile_hint_mismatch_is_unknown_profile() -> None:
    reg = ProfileRegistry()
    raw = reg.encode(Frame("household-nb", "D0000001", 1, T0, "ident", secret=b"x"))
    assert reg.decode(raw, profile="household-nb").kind == "ident"
    with pytest.raises(FrameError) as err:
        reg.decode(raw, profile="gdp-telemetry")
    assert err.value.reason is Reason.UNKNOWN_PROFILE
    with pytest.raises(FrameError) as err:
        reg.decode(raw, profile="no-such-profile")
    assert err.value.reason is Reason.UNKNOWN_PROFILE


def test_oversized_and_trailing_bytes() -> None:
    reg = ProfileRegistry(max_frame_bytes=64)
    big = Frame("gdp-telemetry", "D0000001", 1, T0, "ident", secret=bytes(60))
    raw = ProfileRegistry().encode(big)
    with pytest.raises(FrameError) as err:
        reg.decode(raw)
    assert err.value.reason is Reason.OVERSIZED
    small = ProfileRegistry().encode(Frame("gdp-telemetry", "D0000001", 1, T0, "ident", secret=b"s"))
    with pytest.raises(FrameError) as err:
        reg.decode(small + b"\x00")
    assert err.value.reason is Reason.SCHEMA and "after the" in err.value.detail


def test_encode_refuses_what_the_profile_cannot_carry() -> None:
    reg = ProfileRegistry()
    with pytest.raises(FrameError, match="no channel 'ch4_pct_lel'"):
        reg.encode(Frame("household-nb", "D0000001", 1, T0, "archive", readings=(("ch4_pct_lel", T0, 1.0),)))
    with pytest.raises(FrameError, match="does not fit u32"):
        reg.encode(Frame("household-nb", "D0000001", 1, T0, "archive",
                         readings=(("volume_register_m3", T0, 5e9),)))  # fmt: skip
    with pytest.raises(FrameError, match="format"):
        reg.encode(Frame("household-nb", "X1", 1, T0, "ident"))
    with pytest.raises(FrameError, match="no frame of kind"):
        reg.encode(Frame("household-nb", "D0000001", 1, T0, "instant"))


def test_decoded_frames_drop_missing_readings_but_keep_archive_nulls() -> None:
    reg = ProfileRegistry()
    frame = Frame(
        "corrector-ek", "D0000002", 3, T0, "archive",
        readings=(("volume_register_m3", T0, 10.5),),
        archives=(("hourly", T0, {"volume_m3": 1.25, "volume_work_m3": None, "pressure_kpa": 350.5,
                                  "temperature_c": None}),),
    )  # fmt: skip
    back = reg.decode(reg.encode(frame))
    assert back.readings == (("volume_register_m3", T0, 10.5),)
    assert back.archives == frame.archives


def test_events_and_unknown_event_codes() -> None:
    reg = ProfileRegistry()
    frame = Frame("household-nb", "D0000003", 4, T0, "events",
                  events=((T0, "battery_low", "warning", "battery: 3.125 V"), (T0, "code_99", "warning", "x")))  # fmt: skip
    back = reg.decode(reg.encode(frame))
    assert back.events == (
        (T0, "battery_low", "warning", "battery: 3.125 V"),
        (T0, "code_99", "warning", "unknown event code 99"),
    )


def test_json_frames() -> None:
    reg = ProfileRegistry()
    raw = reg.encode(Frame("mqtt-json", "D0000009", 3, T0, "events",
                           events=((T0, "power_fail", "critical", "external power lost"),)))  # fmt: skip
    assert raw.endswith(b'"}') and re.search(rb',"crc":"[0-9a-f]{8}"}$', raw)
    assert reg.decode(raw).events == ((T0, "power_fail", "critical", "external power lost"),)
    doc = raw.replace(b'"PWR"', b'"PWX"')
    with pytest.raises(FrameError) as err:
        reg.decode(doc)
    assert err.value.reason is Reason.BAD_CRC
    with pytest.raises(FrameError) as err:
        reg.decode(b'{"dev":"D1","cnt":1,"t":1,"type":"ack","acks":[1]}')
    assert err.value.reason is Reason.SCHEMA and "crc" in err.value.detail


def test_server_frames_round_trip() -> None:
    reg = ProfileRegistry()
    ack = decode_server(reg.encode_ack("D0000123", 4711, profile="household-nb", at=T0))
    assert (ack.kind, ack.serial, ack.acked_counter, ack.sent_at) == ("ack", 123, 4711, T0)
    raw = reg.encode_command("D0000007", 99, {"op": "valve", "open": False}, profile="gdp-telemetry", at=T0)
    cmd = decode_server(raw)
    assert (cmd.kind, cmd.serial, cmd.command_id, cmd.command) == ("command", 7, 99, {"op": "valve", "open": False})
    for k in range(len(raw)):
        with pytest.raises(FrameError) as err:
            decode_server(raw[:k])
        assert err.value.reason is Reason.TRUNCATED
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x10
        with pytest.raises(FrameError):
            decode_server(bytes(bad))


def test_frame_error_is_an_ingest_error() -> None:
    from ingest import IngestError

    err = FrameError(Reason.TRUNCATED, "need 37 bytes, got 20")
    assert isinstance(err, IngestError)
    assert str(err) == "truncated: need 37 bytes, got 20"
    assert err.reason == "truncated"


def test_a_missing_folder_is_reported_and_watched(tmp_path: Path) -> None:
    folder = tmp_path / "later"
    reg = ProfileRegistry([folder], rescan_s=3600.0)
    assert reg.problems() == {folder: f"device profile folder {folder} does not exist"}
    folder.mkdir()
    (folder / "water-pulse.toml").write_text(NEW_PROFILE % {"scale": "0.001"})
    reg.refresh()
    assert reg.problems() == {} and "water-pulse" in reg.names()
