"""Background processes of the embedded server, known by their pid files.

The embedded Barbican is one process (synchronous mode) or several
(asynchronous mode: the API, the message broker and the worker).  Each one
is started in a session of its own, its pid written to a file in the state
folder, and stopped by that pid and no other: never by its name, since
other people's servers may run on the same machine.
"""

import errno
import logging
import os
import random
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from helpers.errors import ServerError

_ports = random.Random()

LOG = logging.getLogger(__name__)

HOST = "127.0.0.1"
STOP_TIMEOUT = 15.0


@dataclass
class Part:
    """One part of the embedded server, as ``server status`` shows it.

    :param name: ``"API"``, ``"broker"`` or ``"worker"``.
    :param state: ``"running"``, ``"stopped"`` or, for the worker,
        ``"paused"``.
    :param pid: its process id while it runs.
    :param detail: a few words more, e.g. where it listens.
    """

    name: str
    state: str
    pid: int | None = None
    detail: str = ""

    @property
    def running(self):
        return self.state == "running"


PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                   "all_proxy", "ALL_PROXY")


def bypass_proxy_for_loopback(env=os.environ):
    """Keep 127.0.0.1 away from any HTTP proxy the machine sets.

    The embedded servers listen on this machine only; asked through a
    proxy, the SDK and the CLI fail.  ``env`` is changed in place (child
    processes inherit it); without a proxy it is left alone.  lab.py keeps
    a copy of this: it runs before anything is installed.
    """
    if not any(env.get(name) for name in PROXY_VARIABLES):
        return
    for name in ("no_proxy", "NO_PROXY"):
        hosts = [h.strip() for h in env.get(name, "").split(",") if h.strip()]
        hosts += [h for h in ("127.0.0.1", "localhost") if h not in hosts]
        env[name] = ",".join(hosts)


def write_private(path, text):
    """Write ``text`` to ``path`` readable by its owner only."""
    path = Path(path)
    # A name of this process's own: two writers never share a temp file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_pid(path):
    """The pid in ``path``, or ``None`` when there is no usable one."""
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_alive(pid):
    """True while process ``pid`` runs (a zombie counts as ended)."""
    try:
        # Reap our own child if it has ended, or it lingers as a zombie.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    if _only_zombies_left(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _only_zombies_left(pid):
    """True when every thread of ``pid`` has ended (a zombie to reap).

    The main thread of a process killed by a signal may end, and show as a
    zombie, before its other threads do; until they have, the process
    still holds its files and its listening socket.  So the process counts
    as ended only once no thread of it is left running.
    """
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False  # no /proc to look in: let os.kill decide
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # this thread ended while we looked
        if state not in ("Z", "X"):
            return False
    return True


def command_line(pid):
    """Process ``pid``'s command line as one string, or ``None``.

    Some programs rewrite it (Barbican's worker calls itself "master
    process [...]"), so callers look for a part of it, not a whole word.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def runs_as(pid, *marks):
    """True when ``pid`` is alive and its command line holds every mark.

    Tells our own process from an unrelated one that reused the pid.
    Without ``/proc`` to look in, the pid file is trusted.
    """
    if pid is None or not is_alive(pid):
        return False
    line = command_line(pid)
    if line is None:
        return True
    # A mark ends where a word or a path component does: /tmp/s is not
    # the state folder /tmp/s2, nor -port 43 the port 4369.
    return all(re.search(re.escape(str(mark)) + r"(?=$|[\s/'\"])", line)
               for mark in marks)


def spawn(argv, log_path, pid_path, env=None, cwd=None):
    """Start ``argv`` in a session of its own, its output appended to a log.

    :returns: the :class:`subprocess.Popen` handle; its pid is also
        written to ``pid_path``.
    """
    with open(log_path, "ab") as log:
        os.chmod(log_path, 0o600)
        process = subprocess.Popen(
            [str(a) for a in argv], cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, umask=0o077)
    write_private(pid_path, f"{process.pid}\n")
    LOG.info("started %s, pid %s, log %s", Path(argv[0]).name, process.pid,
             log_path)
    return process


def server_env(state_dir):
    """The environment of the lab's Barbican processes (API and worker).

    Barbican reads ``~/barbican.conf`` when imported, so HOME is the state
    folder; and they import this package, found even when not installed.
    """
    env = dict(os.environ, HOME=str(state_dir))
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def wait_until_ready(process, ready, timeout, died, hung, interval=0.1):
    """Poll ``ready()`` until it is true, as a started process comes up.

    :param process: the process handle, or ``None`` when not ours to poll.
    :param died: called with the exit code if the process ends first; it
        cleans up and returns the :class:`ServerError` to raise.
    :param hung: called when ``timeout`` seconds pass; likewise.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        code = process.poll() if process is not None else None
        if code is not None:
            raise died(code)
        if time.monotonic() > deadline:
            raise hung()
        time.sleep(interval)


def _signal(pid, sig, group):
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        if group:
            _signal(pid, sig, group=False)


def terminate(pid, group=True, timeout=STOP_TIMEOUT):
    """Ask process ``pid`` to stop (SIGTERM), then insist (SIGKILL).

    :param group: signal the whole process group that ``pid`` leads (it
        was started by :func:`spawn`, so that group is its own).  With
        ``False`` only ``pid`` is asked, and whatever of its group is left
        once it has ended is killed: RabbitMQ's start script stops its
        Erlang VM itself, which must not be signalled behind its back.
    """
    _signal(pid, signal.SIGTERM, group)
    deadline = time.monotonic() + timeout
    killed = False
    while is_alive(pid):
        if time.monotonic() > deadline:
            if killed:
                raise ServerError(
                    f"Process {pid} did not stop, even when killed.",
                    f"Stop it by hand (kill -9 {pid}), then try again.")
            LOG.warning("process %s ignored SIGTERM; killing it", pid)
            _signal(pid, signal.SIGKILL, True)
            killed = True
            deadline = time.monotonic() + timeout
        time.sleep(0.05)
    if not group:
        # Leftovers of its group have no one to stop them now.
        for member in group_members(pid):
            LOG.warning("process %s outlived its leader %s; killing it",
                        member, pid)
            _signal(member, signal.SIGKILL, False)


def group_members(pgid):
    """The pids of the processes in group ``pgid``, its leader left out."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and int(entry.name) != pgid:
            members.append(int(entry.name))
    return members


def port_is_free(port, host=HOST):
    """True when nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As a server will: a port left in TIME_WAIT by a server just
        # stopped is free, a port something listens on is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            if exc.errno == errno.EACCES:
                raise ServerError(
                    f"Port {port} is reserved for the system administrator "
                    f"on this machine.",
                    "Choose a port from 1024 to 65535.") from exc
            raise
    return True


def free_port(host=HOST, low=20000, high=32000):
    """A port on ``host`` that nothing listens on right now.

    Chosen below the kernel's ephemeral range (usually 32768 and up), from
    which outgoing connections take their local ports: a broker restarted
    on its old port would otherwise find it taken by some client.
    """
    for _ in range(200):
        port = _ports.randrange(low, high)
        if port_is_free(port, host):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))  # everything there is taken: let the system pick
        return s.getsockname()[1]


def answers(port, host=HOST, timeout=1.0):
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
