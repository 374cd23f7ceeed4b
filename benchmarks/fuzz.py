"""Fuzz campaign: mutated real MIDI files through the whole reading path, with the figures the
README states (inputs tried, read, refused cleanly, crashes, hangs, peak memory).

    python benchmarks/fuzz.py --inputs 20000

Each input is one to three mutations (tests/mutate.py) of one of 100 real files (half EMOPIA,
half POP909). A crash is any exception other than emocompose's own one-line errors; a hang is an
input that takes longer than --hang seconds (stopped by a timer signal). Peak memory is the
process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import collections
import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import DATA, real_files  # noqa: E402
from mutate import mutate, outcome  # noqa: E402


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=20000)
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--hang", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()

    seeds = [p.read_bytes() for p in real_files(args.data, args.files)]
    rng = np.random.default_rng(args.seed)
    counts: collections.Counter = collections.Counter()
    crashes: collections.Counter = collections.Counter()
    by_mutator: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    slowest = (0.0, "")
    signal.signal(signal.SIGALRM, _alarm)
    t0 = time.perf_counter()
    for i in range(args.inputs):
        names, data = mutate(seeds[i % len(seeds)], rng, n=1 + int(rng.integers(3)))
        t = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, args.hang)
        try:
            result = outcome(data)
        except Hang:
            result = "hang"
        except Exception as exc:  # noqa: BLE001 - counting them is the point
            result = "crash"
            crashes[f"{type(exc).__name__}: {str(exc)[:100]} ({names})"] += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        dt = time.perf_counter() - t
        slowest = max(slowest, (dt, names))
        counts[result] += 1
        by_mutator[names.split("+")[0]][result] += 1
    total = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.inputs} inputs from {len(seeds)} real files in {total:.1f} s: read {counts['ok']}, "
          f"refused cleanly {counts['refused']}, crashes {counts['crash']}, hangs {counts['hang']} "
          f"(over {args.hang:g} s); slowest {slowest[0] * 1000:.0f} ms ({slowest[1]}); peak memory {peak:.0f} MB")  # fmt: skip
    for name, c in sorted(by_mutator.items()):
        print(f"  first mutation {name:15s} read {c['ok']:5d}  refused {c['refused']:5d}  crash {c['crash']}  hang {c['hang']}")
    for msg, n in crashes.most_common(10):
        print(f"  crash x{n}: {msg}")


if __name__ == "__main__":
    main()
