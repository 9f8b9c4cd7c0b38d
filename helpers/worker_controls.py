"""Pause and Resume buttons for Barbican's worker, for the notebook.

A thin layer over :func:`helpers.embedded.pause_worker` and
:func:`helpers.embedded.resume_worker`: the same functions a code cell or
``python -m helpers server worker pause|resume`` calls.  Pausing and
resuming take a few seconds (the worker finishes the order in hand, or
starts up), so they run in a background thread and the notebook stays
responsive.  Introduced in
``notebooks/02-why-an-order-can-take-time.ipynb``.
"""

import html
import logging
import threading

import ipywidgets as w

from helpers import embedded
from helpers.errors import LabError

LOG = logging.getLogger(__name__)

STATE_COLOURS = {"running": "#2f855a", "paused": "#b7791f",
                 "stopped": "#c53030"}


def _describe(server):
    """One line about the three parts, as ``server status`` would say it."""
    if not server.running or server.mode != embedded.ASYNC:
        return ("The embedded Barbican does not run in asynchronous mode, "
                "so there is no worker here.")
    parts = []
    for part in server.parts:
        colour = STATE_COLOURS.get(part.state, "#718096")
        parts.append(f"{html.escape(part.name)}: <b style='color:{colour}'>"
                     f"{html.escape(part.state)}</b>")
    if server.orders_waiting is not None:
        parts.append(f"orders waiting in the queue: "
                     f"<b>{server.orders_waiting}</b>")
    return " &nbsp;·&nbsp; ".join(parts)


class WorkerControls:
    """Buttons that pause and resume the embedded server's worker.

    :param state_dir: the embedded server's state folder, if not default.
    """

    def __init__(self, state_dir=None):
        self.state_dir = state_dir
        self._working = False
        self._thread = None
        self.status = w.HTML(layout=w.Layout(margin="0 0 4px 0"))
        self.pause_button = w.Button(
            description="Pause worker", icon="pause",
            tooltip="python -m helpers server worker pause")
        self.resume_button = w.Button(
            description="Resume worker", icon="play",
            tooltip="python -m helpers server worker resume")
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.message = w.HTML()
        self.pause_button.on_click(lambda _: self.pause())
        self.resume_button.on_click(lambda _: self.resume())
        self.refresh_button.on_click(lambda _: self.refresh())
        self.widget = w.VBox([
            self.status,
            w.HBox([self.pause_button, self.resume_button,
                    self.refresh_button]),
            self.message])
        self.refresh()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def refresh(self):
        """Read the server's status and show it; enable what makes sense.

        :returns: the :class:`helpers.embedded.ServerStatus` shown.
        """
        server = embedded.status(self.state_dir)
        self.status.value = _describe(server)
        worker = server.part("worker")
        idle = not self._working
        asynchronous = server.running and worker is not None
        self.pause_button.disabled = not (
            idle and asynchronous and worker.state == "running")
        self.resume_button.disabled = not (
            idle and asynchronous and worker.state != "running")
        return server

    def pause(self):
        """Pause the worker in the background (see :meth:`join`)."""
        self._start("Pausing the worker (it finishes the order in hand)…",
                    embedded.pause_worker,
                    "Paused: new orders stay PENDING in the queue.")

    def resume(self):
        """Resume the worker in the background (see :meth:`join`)."""
        self._start("Starting the worker…", embedded.resume_worker,
                    "Resumed: the worker takes the orders that waited.")

    def join(self, timeout=None):
        """Wait for a pause or resume under way to finish."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _start(self, doing, action, done):
        if self._working:
            return
        self._working = True
        self.message.value = html.escape(doing)
        self.refresh()
        self._thread = threading.Thread(
            target=self._run, args=(action, done), daemon=True,
            name="worker-control")
        self._thread.start()

    def _run(self, action, done):
        try:
            action(self.state_dir)
            text = html.escape(done)
        except LabError as exc:
            text = f"<span style='color:#c53030'>{html.escape(str(exc))}" \
                   f"</span>"
        except Exception as exc:  # a thread's error would otherwise vanish
            LOG.exception("worker control failed")
            text = (f"<span style='color:#c53030'>Unexpected "
                    f"{html.escape(type(exc).__name__)}: "
                    f"{html.escape(str(exc))}</span>")
        self._working = False
        self.message.value = text
        try:
            self.refresh()
        except Exception:  # the message above matters more than the status
            LOG.exception("could not refresh the worker's status")


def worker_controls(state_dir=None):
    """Pause and Resume buttons for the embedded server's worker.

    :param state_dir: the embedded server's state folder, if not default.
    :returns: a :class:`WorkerControls`; show it as a cell's last line.
    """
    return WorkerControls(state_dir)
