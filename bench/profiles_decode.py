"""Frame decoding benchmark: values/s through ``ProfileRegistry.decode`` per shipped profile.

For each profile it encodes ``--frames`` realistic session frames (``--records`` hourly
records each: a day's archive), then times, interleaved and repeated ``--repeat`` times
(medians printed):

* decode       ``registry.decode(raw)`` → ``Frame`` (Python tuples with UTC datetimes,
               what landing consumes);
* encode       ``registry.encode(frame)`` (what the simulator's sender pays);
* ceiling      the checksum plus one ``np.frombuffer`` over the records, no Python
               objects per value: the least any decoder of these bytes must do.

Goal: decoding sustains well over 100,000 values/s on one core (the end-to-end ingest
goal), and the ratio decode/ceiling shows what building Python objects costs.

Usage::

    .venv/bin/python bench/profiles_decode.py            # 2,000 frames × 24 records, 3 repeats
    .venv/bin/python bench/profiles_decode.py --quick    # 200 frames, 1 repeat
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest import Frame, ProfileRegistry
from ingest._crc import crc

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _frames(reg: ProfileRegistry, name: str, n: int, records: int) -> list[Frame]:
    prof = reg.profile(name)
    spec = next(s for s in prof.frames if s.kind == "archive")
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        start = T0 + dt.timedelta(days=i % 300)
        hours = [start + dt.timedelta(hours=h) for h in range(records)]
        readings = []
        archives = []
        for h, ts in enumerate(hours):
            row = {}
            for f in spec.fields:
                if f.channel or f.column:
                    if f.bit is not None:
                        row[f] = float(rng.integers(0, 2))
                    else:
                        row[f] = round(float(rng.uniform(2.5, 4.4)), 2)
            readings += [(f.channel, ts, v) for f, v in row.items() if f.channel]
            if spec.archive:
                archives.append((spec.archive, ts, {f.column: v for f, v in row.items() if f.column}))
        out.append(Frame(name, prof.device_id(1000 + i), i, start + dt.timedelta(days=1), "archive",
                         readings=tuple(readings), archives=tuple(archives)))  # type: ignore[arg-type]  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--records", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="200 frames, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.repeat = 200, 1
    reg = ProfileRegistry(rescan_s=3600.0)
    print(f"frames per profile: {args.frames:,} × {args.records} records; repeats: {args.repeat}")
    print(f"{'profile':<15} {'bytes/frame':>11} {'values/frame':>12} {'decode values/s':>16} "
          f"{'encode frames/s':>16} {'ceiling values/s':>17} {'decode/ceiling':>15}")  # fmt: skip
    for name in reg.names():
        prof = reg.profile(name)
        frames = _frames(reg, name, args.frames, args.records)
        raws = [reg.encode(f) for f in frames]
        values = sum(len(f.readings) + sum(len(a[2]) for a in f.archives) for f in reg_decode_all(reg, raws))
        spec = next(s for s in prof.frames if s.kind == "archive")
        t_dec, t_enc, t_ceil = [], [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            for raw in raws:
                reg.decode(raw)
            t_dec.append(time.perf_counter() - t)
            t = time.perf_counter()
            for f in frames:
                reg.encode(f)
            t_enc.append(time.perf_counter() - t)
            t = time.perf_counter()
            if prof.format == "binary" and spec.dtype is not None:
                k = prof.crc_size
                for raw in raws:
                    crc(prof.crc, raw[:-k])
                    body = raw[18:-k]
                    n = (len(body) - spec.prefix_size) // spec.record_size
                    np.frombuffer(body, dtype=spec.dtype, count=n, offset=spec.prefix_size)
            else:  # JSON: the ceiling is the json module alone
                import json

                for raw in raws:
                    json.loads(raw)
            t_ceil.append(time.perf_counter() - t)
        dec, enc, ceil = (statistics.median(x) for x in (t_dec, t_enc, t_ceil))
        print(f"{name:<15} {sum(map(len, raws)) / len(raws):>11.0f} {values / len(raws):>12.0f} "
              f"{values / dec:>16,.0f} {len(raws) / enc:>16,.0f} {values / ceil:>17,.0f} {ceil / dec:>15.2f}")  # fmt: skip
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {rss:.0f} MB")


def reg_decode_all(reg: ProfileRegistry, raws: list[bytes]) -> list[Frame]:
    return [reg.decode(r) for r in raws]


if __name__ == "__main__":
    main()
