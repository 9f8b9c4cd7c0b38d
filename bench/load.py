"""Classroom load: many learners doing the exercise against one server.

Each learner is a thread with its own HTTP session (a kernel of its own
would hold its own connection too).  They start together, each doing its
round trips back to back.  Afterwards every key made is fetched again and
compared with the bytes the learner got.
"""

import logging
import threading
import time

import requests

from bench.exercise import KEY_LENGTH, BareClient, ExerciseError
from bench.figures import Figure, percentile

LOG = logging.getLogger(__name__)

SECTION = "4 classroom load"


def run(server, learners, trips, budget):
    """Load ``server``; returns a dict of what happened.

    :param budget: seconds; round trips not started by then count as
        errors, so the run always ends.
    """
    latencies, errors, keys = [], [], {}
    deadline = time.monotonic() + budget
    lock = threading.Lock()
    barrier = threading.Barrier(learners + 1)

    def learner():
        client = BareClient(server.endpoint)
        barrier.wait(timeout=60)
        for done in range(trips):
            if time.monotonic() > deadline:
                with lock:
                    errors.extend(["not run: time budget"] * (trips - done))
                break
            started = time.perf_counter()
            try:
                secret, key = client.round_trip()
            except (ExerciseError, requests.RequestException) as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:120])
                continue
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                keys[secret] = key
        client.close()

    threads = [threading.Thread(target=learner, daemon=True)
               for _ in range(learners)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=60)
    started = time.monotonic()
    for thread in threads:
        thread.join(budget + 60)
    wall = time.monotonic() - started

    lost = _lost_keys(server, keys)
    return {"latencies": latencies, "errors": errors, "keys": len(keys),
            "lost": lost, "wall": wall,
            "throughput": len(latencies) / wall if wall else 0.0}


def _lost_keys(server, keys):
    """Keys no longer fetchable, or not 32 bytes, or not the same bytes."""
    client = BareClient(server.endpoint)
    lost = []
    for secret, key in keys.items():
        try:
            again = client.payload(secret)
        except (ExerciseError, requests.RequestException) as exc:
            lost.append(f"{secret}: {exc}")
            continue
        if len(again) != KEY_LENGTH or again != key:
            lost.append(f"{secret}: {len(again)} bytes, changed")
    client.close()
    return lost


def figures(ours, ref, learners, trips):
    """The rows for two results of :func:`run`."""
    total = learners * trips
    rows = [Figure(
        SECTION, f"{learners} learners x {trips}: round trips/s",
        ours["throughput"], ref["throughput"], "uWSGI", ">= ref",
        ours["throughput"] >= ref["throughput"], digits=1)]
    for pct in (50, 95, 99):
        rows.append(Figure(
            SECTION, f"round trip p{pct} under load (ms)",
            percentile(ours["latencies"], pct),
            percentile(ref["latencies"], pct), "uWSGI", digits=0))
    rows += [
        Figure(SECTION, f"errors (of {total} round trips)",
               len(ours["errors"]), len(ref["errors"]), "uWSGI", "0",
               not ours["errors"], digits=0,
               extra={"ours": sorted(set(ours["errors"]))[:10],
                      "ref": sorted(set(ref["errors"]))[:10]}),
        Figure(SECTION, f"keys lost (of {ours['keys']} fetched again)",
               len(ours["lost"]), len(ref["lost"]), "uWSGI", "0",
               not ours["lost"], digits=0,
               extra={"ours": ours["lost"][:10], "ref": ref["lost"][:10]}),
    ]
    return rows
