#!/usr/bin/env python3
"""Result-serializer benchmark for flowrun: what encoding one large result costs.

Encodes one list-of-dicts result of about ``--mb`` MB of JSON (10 by default: rows of ints,
floats, bools, strings, a short list and a nested dict, like a table a task hands to the next)
with ``JsonSerializer()`` (the default: ``json.dumps``, in slices for a big list or dict) and with
``JsonSerializer(strict=True)`` (the old default: ``json.dumps``, then ``json.loads`` and a
comparison, to refuse what JSON would change). A bare ``json.dumps(value).encode()`` is timed
too, as the floor. Prints the best time of each, its throughput in MB of JSON per second and
its cost relative to the floor.

Timed region: one ``serialize(value)`` call (or the bare ``json.dumps``) on a value built
beforehand; the same value for every case. Cases take turns for ``--repeat`` rounds after one
untimed warm-up round, with ``gc`` collected before each call, and the best time is kept.

Usage:
  python benchmarks/bench_serializers.py               # ~10 MB, best of 5
  python benchmarks/bench_serializers.py --mb 50 --repeat 3 --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import flowrun


def make_rows(megabytes: float) -> list[dict[str, Any]]:
    """Rows of mixed JSON data, enough for about ``megabytes`` MB once encoded."""

    def row(i: int) -> dict[str, Any]:
        return {
            "id": i,
            "name": f"customer-{i:07d}",
            "price": round(i * 0.37, 2),
            "active": i % 3 != 0,
            "tags": ["retail", f"region-{i % 17}"],
            "meta": {"source": "api", "rank": i % 1000, "score": i / 7},
        }

    per_row = len(json.dumps(row(500_000)).encode()) + 2  # ", " between rows
    return [row(i) for i in range(max(1, round(megabytes * 1e6 / per_row)))]


def time_call(call: Callable[[], bytes]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def measure(value: Any, repeat: int) -> dict[str, dict[str, float]]:
    default, strict = flowrun.JsonSerializer(), flowrun.JsonSerializer(strict=True)
    cases: dict[str, Callable[[], bytes]] = {
        "json.dumps (floor)": lambda: json.dumps(value, ensure_ascii=False).encode(),
        "JsonSerializer()": lambda: default.serialize(value),
        "JsonSerializer(strict=True)": lambda: strict.serialize(value),
    }
    size = len(default.serialize(value))
    if default.serialize(value) != strict.serialize(value):
        raise RuntimeError("the two modes encoded the same value differently")
    times: dict[str, list[float]] = {label: [] for label in cases}
    for round_index in range(repeat + 1):
        for label, call in cases.items():
            elapsed = time_call(call)
            if round_index:  # round 0 is the warm-up
                times[label].append(elapsed)
    return {
        label: {"best_s": min(runs), "mb_per_s": size / 1e6 / min(runs), "bytes": size}
        for label, runs in times.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mb", type=float, default=10.0, help="size of the result (default 10)")
    p.add_argument("--repeat", type=int, default=5, help="best of N (default 5)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write results as JSON")
    ns = p.parse_args(argv)
    if ns.mb <= 0 or ns.repeat < 1:
        p.error("--mb must be > 0 and --repeat >= 1")

    value = make_rows(ns.mb)
    result = measure(value, ns.repeat)
    size = next(iter(result.values()))["bytes"]
    print(
        f"python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; one result: a list of {len(value)} dicts, "
        f"{size / 1e6:.1f} MB of JSON; best of {ns.repeat}"
    )
    floor = result["json.dumps (floor)"]["best_s"]
    print(f"{'encoder':<30}{'best':>10}{'MB/s':>10}{'vs floor':>10}")
    for label, row in result.items():
        best = row["best_s"]
        print(f"{label:<30}{best * 1e3:>8.1f}ms{row['mb_per_s']:>10.0f}{best / floor:>9.2f}x")
    speedup = result["JsonSerializer(strict=True)"]["best_s"] / result["JsonSerializer()"]["best_s"]
    print(f"default vs strict: {speedup:.2f}x faster")
    if ns.json:
        payload = {"rows": len(value), "repeat": ns.repeat, "cases": result}
        with open(ns.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
        print(f"wrote {ns.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
