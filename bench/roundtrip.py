"""Round trip: one learner's exercise, timed end to end.

Three clients take turns, so they share the machine's noise: the helpers
against the embedded server, a bare HTTP client against the embedded
server, and the same bare client against the uWSGI reference.
"""

import logging
import time

import helpers
from bench.exercise import BareClient, RequestLog, helpers_round_trip
from bench.figures import Figure, percentile

LOG = logging.getLogger(__name__)

SECTION = "2 round trip"
HELPERS_TARGET = 1.25
WARM_UP = 5


def measure(ours, ref, runs, deadline):
    """Time ``runs`` round trips of each client.

    :param ours: the running embedded server.
    :param ref: the running reference server.
    :param deadline: ``time.monotonic()`` value to stop at, whatever
        ``runs`` says.
    :returns: a list of :class:`Figure`.
    """
    conn = helpers.connect(state_dir=ours.state_dir)
    log = RequestLog(conn)
    bare_ours, bare_ref = BareClient(ours.endpoint), BareClient(ref.endpoint)
    clients = {
        "helpers": lambda: helpers_round_trip(conn),
        "bare": bare_ours.round_trip,
        "bare_ref": bare_ref.round_trip,
    }
    for call in clients.values():
        for _ in range(WARM_UP):
            call()

    times = {name: [] for name in clients}
    counts = []
    names = list(clients)
    for i in range(runs):
        if time.monotonic() > deadline:
            LOG.warning("round trips stopped at %d of %d: time budget", i,
                        runs)
            break
        # Rotate who goes first, so no client always follows another.
        for name in names[i % 3:] + names[:i % 3]:
            mark = log.mark()
            started = time.perf_counter()
            clients[name]()
            times[name].append((time.perf_counter() - started) * 1000)
            if name == "helpers":
                counts.append(len(log.since(mark)))
    bare_ours.close()
    bare_ref.close()
    conn.close()

    done = len(times["helpers"])
    figures = []
    for pct in (50, 95):
        ours_ms = percentile(times["helpers"], pct)
        bare_ms = percentile(times["bare"], pct)
        figures.append(Figure(
            SECTION, f"(a) helpers, p{pct} of {done} (ms)", ours_ms,
            bare_ms, "bare HTTP", f"<= {HELPERS_TARGET}x ref",
            ours_ms <= HELPERS_TARGET * bare_ms, digits=1))
    figures.append(Figure(
        SECTION, "(a) helpers, requests per round trip",
        sum(counts) / len(counts), 3, "bare HTTP", digits=1,
        extra={"counts": sorted(set(counts))}))
    for pct in (50, 95):
        ours_ms = percentile(times["bare"], pct)
        ref_ms = percentile(times["bare_ref"], pct)
        target, met = ("<= ref", ours_ms <= ref_ms) if pct == 50 else (
            "", None)
        figures.append(Figure(
            SECTION, f"(b) server, bare HTTP, p{pct} (ms)", ours_ms, ref_ms,
            "uWSGI", target, met, digits=1))
    return figures
