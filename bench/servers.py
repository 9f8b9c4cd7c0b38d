"""The two servers the figures compare, started and stopped by handle.

*Ours* is the embedded Barbican, started the way a learner starts it
(``python -m helpers server start``).  The *reference* is the same Barbican
app under uWSGI from PyPI, launched as Barbican's deployment guides do, from
a state folder prepared by the same code with the same configuration.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from helpers import embedded

LOG = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_APP = Path(__file__).with_name("reference_app.py")
HOST = "127.0.0.1"
POLL_INTERVAL = 0.02
STOP_TIMEOUT = 15.0


class BenchError(Exception):
    """A measurement could not be made; the message says why."""


def free_port():
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def child_env(state_dir=None):
    """The environment for a process we start: no cloud, ``helpers`` found.

    :param state_dir: when given, ``HOME`` and ``$BARBICAN_LAB_STATE``
        point there, so Barbican reads that folder's ``barbican.conf``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    # "Ours" is the default, synchronous server, whatever this shell says.
    env[embedded.MODE_ENV] = embedded.SYNC
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if state_dir is not None:
        env["HOME"] = str(state_dir)
        env[embedded.STATE_ENV] = str(state_dir)
    return env


def healthy(endpoint, timeout=1.0):
    """True when ``GET /healthcheck`` answers 200."""
    try:
        with urllib.request.urlopen(f"{endpoint}/healthcheck",
                                    timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_healthy(endpoint, started, timeout, process=None):
    """Poll until the first healthy answer; seconds since ``started``.

    :param started: ``time.monotonic()`` when the start command was given.
    :param process: a ``Popen`` whose failure ends the wait early.
    :raises BenchError: no healthy answer within ``timeout`` seconds.
    """
    while not healthy(endpoint, timeout=1.0):
        if process is not None and process.poll() not in (None, 0):
            raise BenchError(f"the server at {endpoint} exited with code "
                             f"{process.returncode} while starting")
        if time.monotonic() - started > timeout:
            raise BenchError(f"no healthy answer from {endpoint} within "
                             f"{timeout:.0f} s")
        time.sleep(POLL_INTERVAL)
    return time.monotonic() - started


def descendants(pid):
    """``pid`` and every process below it, from /proc."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def memory_kib(pid, field):
    """A ``VmRSS``/``VmHWM`` figure of ``pid`` from /proc, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def prepare_state(state_dir, endpoint):
    """Write the embedded server's configuration into ``state_dir``.

    The very code ``helpers.embedded.start`` runs, so both servers read the
    same ``barbican.conf`` and paste file.
    """
    state_dir, paths = embedded._paths(state_dir)
    embedded._prepare_state(state_dir, paths, endpoint)
    return state_dir


class Embedded:
    """The embedded Barbican (waitress, one process) in ``state_dir``."""

    label = "embedded"

    def __init__(self, state_dir, port):
        self.state_dir = Path(state_dir)
        self.port = port
        self.endpoint = f"http://{HOST}:{port}"

    def start(self, timeout=120.0):
        """Run ``python -m helpers server start``; seconds to healthy.

        The time runs from the command's launch to the first healthy
        answer, polled every 20 ms from here (the command itself only
        looks every 100 ms).
        """
        command = [sys.executable, "-m", "helpers", "--state-dir",
                   str(self.state_dir), "server", "start", "--port",
                   str(self.port)]
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=ROOT, env=child_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            seconds = wait_healthy(self.endpoint, started, timeout, process)
            _, err = process.communicate(timeout=timeout)
        except BaseException:
            process.kill()
            process.wait()
            embedded.stop(self.state_dir)
            raise
        if process.returncode != 0:
            raise BenchError(f"server start failed: {err.decode().strip()}")
        return seconds

    def pids(self):
        pid = embedded.status(self.state_dir).pid
        return [pid] if pid else []

    def stop(self):
        embedded.stop(self.state_dir)


class Reference:
    """Barbican's WSGI app under uWSGI, with ``processes`` x ``threads``.

    One process of one thread by default, as Barbican's own vassal file
    has it.  More processes share the sqlite file: a second worker building
    a fresh database fails with "database is locked".  More threads make
    concurrent orders fail the same way (HTTP 500).
    """

    label = "uWSGI"

    def __init__(self, state_dir, port, processes=1, threads=1):
        self.state_dir = Path(state_dir)
        self.port = port
        self.processes = processes
        self.threads = threads
        self.endpoint = f"http://{HOST}:{port}"
        self.process = None

    def command(self):
        """uWSGI's command line, as Barbican's guides and devstack run it.

        One line per option family: the socket and app; the master and
        its workers; loading the app in each worker after the fork
        (``lazy-apps``, as Barbican's own vassal file and devstack do,
        so no sqlite connection is shared across a fork); the header
        Barbican's vassal file adds (uWSGI's plain HTTP socket closes the
        connection after each answer, and says so with it); shutdown.
        """
        uwsgi = Path(sys.executable).with_name("uwsgi")
        return [
            str(uwsgi), "--http-socket", f"{HOST}:{self.port}",
            "--wsgi-file", str(REFERENCE_APP), "--need-app",
            "--virtualenv", sys.prefix,
            "--master", "--processes", str(self.processes),
            "--threads", str(self.threads), "--enable-threads",
            "--lazy-apps", "--thunder-lock", "--buffer-size", "65535",
            "--add-header", "Connection: close",
            "--die-on-term",
        ]

    def start(self, timeout=120.0):
        """Prepare the state folder, launch uWSGI; seconds to healthy."""
        started = time.monotonic()
        prepare_state(self.state_dir, self.endpoint)
        with open(self.state_dir / "uwsgi.log", "ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.state_dir,
                env=child_env(self.state_dir), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            return wait_healthy(self.endpoint, started, timeout,
                                self.process)
        except BaseException:
            self.stop()
            raise

    def pids(self):
        if self.process is None or self.process.poll() is not None:
            return []
        return descendants(self.process.pid)

    def stop(self):
        """SIGINT to the master (uWSGI's quick stop), then wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            LOG.warning("uWSGI %s ignored SIGINT; killing its group",
                        process.pid)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
