"""``python -m bench``: measure barbican-lab beside its references, print.

Every figure is measured in this run, on this machine, next to its
reference: Barbican's own WSGI app under uWSGI for the server, a bare HTTP
client for the helpers, openstacksdk's ``wait_for_status`` for the wait,
a bare kernel for memory, ``import openstack`` for import time.
"""

import argparse
import json
import logging
import os
import platform
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

from bench import load, memory, notebook, roundtrip, startup, waiting
from bench.figures import render
from bench.servers import Embedded, Reference, free_port
from helpers import broker
from helpers.wsgi import THREADS

LOG = logging.getLogger("bench")

FULL = {"starts": 5, "runs": 200, "repeats": 5,
        "delays": [0.05, 0.5, 1.7, 3.3, 6.1], "hold": 30.0,
        "learners": 30, "trips": 20, "imports": 5, "notebooks": 3}
QUICK = {"starts": 1, "runs": 3, "repeats": 1, "delays": [0.3],
         "hold": 5.0, "learners": 3, "trips": 2, "imports": 1,
         "notebooks": 1}
SECTIONS = ("startup", "roundtrip", "waiting", "load", "memory",
            "notebook")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure barbican-lab beside its references and print "
                    "a table of figures (loopback only, bounded).")
    parser.add_argument("--quick", action="store_true",
                        help="tiny counts: checks that everything runs")
    parser.add_argument("--only", nargs="+", choices=SECTIONS,
                        help="measure these sections only")
    parser.add_argument("--json", type=Path,
                        help="also write the figures to this file")
    parser.add_argument("--budget", type=float, default=600.0,
                        help="seconds for round trips and load together "
                             "(default 600)")
    parser.add_argument("--ref-processes", type=int, default=1,
                        help="uWSGI processes (default 1, as Barbican's "
                             "vassal file)")
    parser.add_argument("--ref-threads", type=int, default=1,
                        help="uWSGI threads per process (default 1, as "
                             "Barbican's vassal file)")
    parser.add_argument("--pending", choices=("worker", "sqlite"),
                        help="how orders are kept PENDING for the waiting "
                             "figures: a paused worker of an asynchronous "
                             "server (default; needs RabbitMQ) or an edited "
                             "database row (default with --quick)")
    parser.add_argument("--verbose", action="store_true",
                        help="log each measurement as it is made")
    for name, value in FULL.items():
        if not isinstance(value, list):
            parser.add_argument(f"--{name}", type=type(value),
                                help=f"default {value} (quick: "
                                     f"{QUICK[name]})")
    return parser


def machine():
    """What the figures were measured on, as printable lines."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0))

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cores": os.cpu_count(), "usable_cores": usable, "cpu": model,
        "python": platform.python_version(),
        "barbican": version("barbican"), "waitress": version("waitress"),
        "uwsgi": version("uwsgi"), "openstacksdk": version("openstacksdk"),
    }


def _loadavg():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _counts(args):
    counts = dict(QUICK if args.quick else FULL)
    for name in counts:
        value = getattr(args, name, None)
        if value is not None:
            counts[name] = value
    return counts


def _pending(args):
    """How orders are held PENDING: the worker when RabbitMQ is there."""
    chosen = args.pending or ("sqlite" if args.quick else "worker")
    if chosen == "worker" and not broker.installed():
        LOG.warning("RabbitMQ is not installed: orders are held PENDING "
                    "by editing their database rows instead")
        return "sqlite"
    return chosen


def _start_both(ours, ref):
    """Start our server and (unless ``None``) the reference side by side."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        starting = pool.submit(ref.start) if ref is not None else None
        ours.start()
        if starting is not None:
            starting.result()  # the reference's failure, raised here


def measure(args, counts, workdir):
    """Run the chosen sections; returns the figures in table order."""
    chosen = set(args.only or SECTIONS)
    shape = (args.ref_processes, args.ref_threads)
    deadline = time.monotonic() + args.budget
    figures = []
    if "startup" in chosen:
        LOG.info("start-up: %d cold and %d warm starts of each server",
                 counts["starts"], counts["starts"])
        figures += startup.measure(workdir, counts["starts"], shape)
    if not chosen & {"roundtrip", "waiting", "load", "memory", "notebook"}:
        return figures

    ours = Embedded(workdir / "ours", free_port())
    ref = Reference(workdir / "ref", free_port(), *shape)
    try:
        _start_both(ours, ref if chosen & {"roundtrip", "load", "memory"}
                    else None)
        if "roundtrip" in chosen:
            LOG.info("round trips: %d of each client", counts["runs"])
            figures += roundtrip.measure(ours, ref, counts["runs"],
                                         deadline)
        if "waiting" in chosen:
            LOG.info("waiting: orders held PENDING up to %.0f s",
                     counts["hold"])
            figures += waiting.measure(
                ours, workdir, counts["repeats"], counts["delays"],
                counts["hold"], _pending(args))
        if chosen & {"load", "memory"}:
            LOG.info("load: %d learners x %d round trips, each server",
                     counts["learners"], counts["trips"])
            budget = max(30.0, (deadline - time.monotonic()) / 2)
            results, peaks = {}, {}
            for name, server in (("ours", ours), ("ref", ref)):
                results[name] = load.run(server, counts["learners"],
                                         counts["trips"], budget)
                peaks[name] = memory.server_peak(server)
            if "load" in chosen:
                figures += load.figures(results["ours"], results["ref"],
                                        counts["learners"], counts["trips"])
            if "memory" in chosen:
                figures += memory.server_figures(peaks["ours"],
                                                 peaks["ref"])
        ref.stop()
        if "memory" in chosen:
            LOG.info("memory: a kernel, and %d imports", counts["imports"])
            figures += memory.kernel_figures(ours.state_dir,
                                             counts["imports"])
        if "notebook" in chosen:
            LOG.info("notebook: %d runs", counts["notebooks"])
            figures += notebook.measure(ours.state_dir, counts["notebooks"],
                                        workdir)
    finally:
        ref.stop()
        ours.stop()
    return figures


def report(figures, facts, counts, started_load, seconds, args):
    """Print the table with the machine and the notes under it."""
    shape = f"{args.ref_processes} process(es) x {args.ref_threads} threads"
    print(f"barbican-lab bench ({'quick' if args.quick else 'full'} run, "
          f"{seconds:.0f} s)")
    print(f"machine: {facts['cores']} cores ({facts['usable_cores']} "
          f"usable), {facts['cpu']}")
    print(f"load average (1, 5, 15 min): {started_load} at start, "
          f"{_loadavg()} at end")
    print(f"python {facts['python']}, barbican {facts['barbican']}, "
          f"openstacksdk {facts['openstacksdk']}; ours: waitress "
          f"{facts['waitress']} (1 process x {THREADS} threads); reference: "
          f"uWSGI "
          f"{facts['uwsgi']} ({shape})")
    print("counts: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    print()
    print(render(figures))
    notes = sorted({f.note for f in figures if f.note})
    for note in notes:
        print(f"note: {note}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    if args.verbose:
        LOG.setLevel(logging.INFO)
    # A SIGTERM ends the run through the finally clauses that stop the
    # servers, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    counts = _counts(args)
    facts = machine()
    started_load = _loadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="barbican-lab-bench-") as work:
        figures = measure(args, counts, Path(work))
    seconds = time.monotonic() - started
    report(figures, facts, counts, started_load, seconds, args)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": facts, "counts": counts, "seconds": seconds,
            "load_average_start": started_load,
            "load_average_end": _loadavg(),
            "figures": [f.as_dict() for f in figures]}, indent=2))
    return 0
