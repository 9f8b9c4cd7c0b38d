"""Start-up: seconds from the start command to the first healthy answer.

Cold starts get a fresh state folder each (new KEK, new database whose
schema Barbican creates); warm starts restart a server in the folder of
its first cold start.  Our starts and the reference's alternate, so both
see the same machine noise.
"""

import logging

from bench.figures import Figure, median
from bench.servers import Embedded, Reference, free_port

LOG = logging.getLogger(__name__)

SECTION = "1 start-up"
TARGET_SECONDS = 3.0


def _start_stop(server, timeout):
    try:
        return server.start(timeout=timeout)
    finally:
        server.stop()


def measure(workdir, starts, reference_shape, timeout=120.0):
    """Time ``starts`` cold and ``starts`` warm starts of each server.

    :param workdir: a folder for the state folders.
    :param reference_shape: ``(processes, threads)`` for uWSGI.
    :returns: a list of :class:`Figure`.
    """
    def make(kind, name):
        state_dir = workdir / f"start-{kind}-{name}"
        if kind == "ours":
            return Embedded(state_dir, free_port())
        return Reference(state_dir, free_port(), *reference_shape)

    times = {(kind, temp): [] for kind in ("ours", "ref")
             for temp in ("cold", "warm")}
    for i in range(starts):
        for kind in ("ours", "ref"):
            seconds = _start_stop(make(kind, f"cold{i}"), timeout)
            times[kind, "cold"].append(seconds)
            LOG.info("cold start %s %d: %.2f s", kind, i, seconds)
    for i in range(starts):
        for kind in ("ours", "ref"):
            # The folder of the first cold start, on a new port.
            seconds = _start_stop(make(kind, "cold0"), timeout)
            times[kind, "warm"].append(seconds)
            LOG.info("warm start %s %d: %.2f s", kind, i, seconds)

    figures = []
    for temp in ("cold", "warm"):
        ours, ref = median(times["ours", temp]), median(times["ref", temp])
        figures.append(Figure(
            SECTION, f"{temp} start, median of {starts} (s)", ours, ref,
            "uWSGI", f"<= {TARGET_SECONDS:.0f} s and <= ref",
            ours <= TARGET_SECONDS and ours <= ref, digits=2,
            extra={"ours": times["ours", temp], "ref": times["ref", temp]}))
    return figures
