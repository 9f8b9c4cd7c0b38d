"""Barbican's worker: the process that fulfils the orders on the queue.

In the asynchronous mode of the embedded server, Barbican's API only
records an order (PENDING) and puts it on the broker's queue; this process,
Barbican's own ``barbican-worker``, takes it from there, makes the key and
marks the order ACTIVE.  While the worker is paused the orders wait in the
queue, PENDING, and none is lost: they are fulfilled once it is resumed.
Introduced in ``notebooks/02-why-an-order-can-take-time.ipynb``.

Run as ``python -m helpers.worker --state-dir DIR`` by
:mod:`helpers.embedded`, never by hand: it makes the adjustments of
:mod:`helpers.adjustments` and then runs ``barbican.cmd.worker.main``,
Barbican's worker code unchanged.  Like the API, it reads its
configuration from ``~/barbican.conf``, so it runs with ``HOME`` set to the
state folder.
"""

import argparse
import logging
import sys
from pathlib import Path

from helpers import broker, processes
from helpers.errors import ServerError
from helpers.processes import Part

LOG = logging.getLogger(__name__)

START_TIMEOUT = 90.0
PROGRAM = "barbican-worker"


def _paths(state_dir):
    state_dir = Path(state_dir)
    return {
        "config": state_dir / "barbican.conf",
        "log": state_dir / "worker.log",
        "pid": state_dir / "worker.pid",
        "paused": state_dir / "worker.paused",
    }


def _worker_pid(state_dir):
    paths = _paths(state_dir)
    pid = processes.read_pid(paths["pid"])
    # The worker renames itself ("barbican-worker: master process [...]"):
    # both its names hold "worker" and the path of its configuration.
    if processes.runs_as(pid, "worker", paths["config"]):
        return pid
    return None


def is_paused(state_dir):
    """True when the worker was paused on purpose (and not resumed)."""
    return _paths(state_dir)["paused"].exists()


def forget_pause(state_dir):
    """Let the next start run the worker even if it was paused."""
    _paths(state_dir)["paused"].unlink(missing_ok=True)


def _log_tail(paths, lines=3):
    try:
        text = paths["log"].read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " ".join(text[-lines:])[-300:]


def launch_worker(state_dir):
    """Start the worker process without waiting for it.

    It connects to the broker on its own, retrying until the broker
    answers, so it may be launched while the broker still boots.

    :returns: the process handle, or ``None`` when the worker runs already.
    """
    state_dir = Path(state_dir)
    if _worker_pid(state_dir) is not None:
        return None
    paths = _paths(state_dir)
    return processes.spawn(
        [sys.executable, "-m", "helpers.worker", "--state-dir", state_dir],
        paths["log"], paths["pid"], env=processes.server_env(state_dir),
        cwd=state_dir)


def wait_for_worker(state_dir, process, timeout=START_TIMEOUT):
    """Wait until the worker launched as ``process`` reads the order queue.

    :raises ServerError: it stopped or hung on its way up (and was
        stopped); the message names its log.
    """
    paths = _paths(state_dir)

    def died(code):
        paths["pid"].unlink(missing_ok=True)
        return ServerError(
            f"Barbican's worker stopped while starting (exit code {code}): "
            f"{_log_tail(paths)}", f"Its log says why: {paths['log']}")

    def hung():
        stop_worker(state_dir)
        return ServerError(
            f"Barbican's worker did not read the order queue within "
            f"{timeout:.0f} s and was stopped.",
            f"Its log may say why: {paths['log']}")

    processes.wait_until_ready(process, lambda: _consuming(state_dir),
                               timeout, died, hung, interval=0.2)
    LOG.info("Barbican's worker reads the order queue")


def start_worker(state_dir, timeout=START_TIMEOUT):
    """Start the worker and wait until it reads the order queue.

    The broker must run; starting a worker that runs already is fine.

    :returns: the worker as a :class:`Part`.
    :raises ServerError: the worker stopped or hung on its way up; the
        message names its log.
    """
    wait_for_worker(state_dir, launch_worker(state_dir), timeout)
    return worker_status(state_dir)


def _consuming(state_dir):
    depth = broker.queue_depth(state_dir)
    return depth is not None and depth[1] > 0


def stop_worker(state_dir):
    """Stop the worker; the orders in the queue wait for the next one.

    :returns: ``True`` when a running worker was stopped.
    """
    state_dir = Path(state_dir)
    pid = _worker_pid(state_dir)
    if pid is not None:
        # Its master process stops the process that does the work, which
        # first finishes the order in hand.
        processes.terminate(pid, group=False, timeout=30.0)
        LOG.info("stopped Barbican's worker, pid %s", pid)
    _paths(state_dir)["pid"].unlink(missing_ok=True)
    return pid is not None


def pause_worker(state_dir):
    """Stop the worker on purpose: orders stay PENDING until it resumes.

    :returns: the worker as a :class:`Part` (``"paused"``).
    """
    paths = _paths(state_dir)
    processes.write_private(paths["paused"],
                            "paused with: python -m helpers server worker "
                            "pause\n")
    stop_worker(state_dir)
    return worker_status(state_dir)


def resume_worker(state_dir, timeout=START_TIMEOUT):
    """Start the paused worker again; it fulfils the waiting orders.

    :returns: the worker as a :class:`Part` (``"running"``).
    :raises ServerError: the worker could not start.
    """
    forget_pause(state_dir)
    return start_worker(state_dir, timeout)


def worker_status(state_dir):
    """The worker as ``server status`` shows it: a :class:`Part`."""
    pid = _worker_pid(state_dir)
    if pid is not None:
        return Part("worker", "running", pid, PROGRAM)
    if is_paused(state_dir):
        return Part("worker", "paused", None, PROGRAM)
    return Part("worker", "stopped", None, PROGRAM)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m helpers.worker")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    paths = _paths(args.state_dir)

    # First: importing barbican.cmd picks oslo.service's threading backend,
    # which must happen before anything imports oslo.service otherwise.
    from barbican.cmd import worker

    from helpers import adjustments

    adjustments.begin_sqlite_immediately()
    adjustments.finish_order_in_hand_on_stop()

    # Barbican's worker parses sys.argv and names itself after argv[0].
    sys.argv = [PROGRAM, "--config-file", str(paths["config"]),
                "--log-file", str(paths["log"])]
    return worker.main()


if __name__ == "__main__":
    sys.exit(main())
