"""The embedded Barbican: a real Barbican server in a folder of its own.

Everything the server keeps lives in one state folder (mode 0700): its
configuration, the Fernet key-encryption key (KEK) that protects every
stored secret, the sqlite database, the log and the pid file.  The KEK is
made once, so keys ordered before a restart can still be read after it.
"""

import errno
import logging
import os
import secrets as _random
import base64
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from helpers.errors import ServerError
from helpers.wsgi import PASTE_INI

LOG = logging.getLogger(__name__)

DEFAULT_PORT = 9311
HOST = "127.0.0.1"
STATE_ENV = "BARBICAN_LAB_STATE"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0

CONFIG = """\
# Written by barbican-lab at every start; edits here are overwritten.
[DEFAULT]
host_href = {endpoint}
db_auto_create = True
log_file = {state_dir}/barbican.log
debug = False

[database]
connection = sqlite:///{state_dir}/barbican.sqlite

[queue]
enable = False

[secretstore]
enabled_secretstore_plugins = store_crypto

[crypto]
enabled_crypto_plugins = simple_crypto

[simple_crypto_plugin]
kek = {kek}
"""


@dataclass
class ServerStatus:
    """What ``python -m helpers server status`` reports."""

    running: bool
    endpoint: str
    state_dir: Path
    version: str
    pid: int | None = None

    @property
    def cli_environment(self):
        """The two variables that point the ``openstack`` CLI here."""
        return {"OS_AUTH_TYPE": "none", "OS_ENDPOINT": f"{self.endpoint}/v1"}


def barbican_version():
    return metadata.version("barbican")


def default_state_dir():
    """The state folder: ``$BARBICAN_LAB_STATE`` or the user's data folder."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or "~/.local/share"
    return Path(data_home).expanduser() / "barbican-lab"


def _paths(state_dir):
    state_dir = Path(state_dir or default_state_dir()).expanduser().resolve()
    return state_dir, {
        "kek": state_dir / "kek",
        "config": state_dir / "barbican.conf",
        "paste": state_dir / "barbican-api-paste.ini",
        "database": state_dir / "barbican.sqlite",
        "log": state_dir / "barbican.log",
        "pid": state_dir / "server.pid",
    }


def _write_private(path, text):
    """Write ``text`` to ``path`` readable by its owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _prepare_state(state_dir, paths, endpoint):
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)
    if not paths["kek"].exists():
        # A Fernet key: url-safe base64 of 32 random bytes.  Plain base64
        # would only fail later, at the first order.
        kek = base64.urlsafe_b64encode(_random.token_bytes(32)).decode()
        _write_private(paths["kek"], kek + "\n")
        LOG.info("made a new key-encryption key in %s", paths["kek"])
    os.chmod(paths["kek"], 0o600)
    kek = paths["kek"].read_text().strip()
    _write_private(paths["config"], CONFIG.format(
        endpoint=endpoint, state_dir=state_dir, kek=kek))
    _write_private(paths["paste"], PASTE_INI.format(state_dir=state_dir))
    if not paths["database"].exists():
        # sqlite keeps the mode of an existing file: create it private.
        os.close(os.open(paths["database"], os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(paths["database"], 0o600)


def _configured_endpoint(paths):
    try:
        for line in paths["config"].read_text().splitlines():
            if line.startswith("host_href"):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def _read_pid(paths):
    try:
        return int(paths["pid"].read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _is_alive(pid):
    try:
        # Reap our own child if it has ended, or it lingers as a zombie.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_server(pid, state_dir):
    """Tell a live server of this state folder from a reused pid."""
    if not _is_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return True  # no /proc to look in: trust the pid file
    return b"helpers.wsgi" in args and str(state_dir).encode() in args


def _healthy(endpoint, timeout=2.0):
    try:
        with urllib.request.urlopen(f"{endpoint}/healthcheck",
                                    timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the server will: a port left in TIME_WAIT by a server just
        # stopped is free, a port something listens on is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _log_tail(paths, lines=5):
    try:
        return paths["log"].read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def status(state_dir=None):
    """Report whether the embedded Barbican runs, and where.

    :param state_dir: the state folder; the default one when ``None``.
    :returns: a :class:`ServerStatus`.
    """
    state_dir, paths = _paths(state_dir)
    pid = _read_pid(paths)
    running = pid is not None and _is_our_server(pid, state_dir)
    endpoint = (_configured_endpoint(paths)
                or f"http://{HOST}:{DEFAULT_PORT}")
    return ServerStatus(running=running, endpoint=endpoint,
                        state_dir=state_dir, version=barbican_version(),
                        pid=pid if running else None)


def start(state_dir=None, port=None, timeout=START_TIMEOUT):
    """Start the embedded Barbican in the background and wait until it answers.

    Starting a server that already runs is fine: its status comes back.

    :param state_dir: the state folder; the default one when ``None``.
    :param port: the port on 127.0.0.1; 9311 when ``None``.
    :param timeout: seconds to wait for the first healthy answer.
    :returns: a :class:`ServerStatus` of the running server.
    :raises ServerError: the port is taken, or the server died or hung on
        its way up; the message names the log.
    """
    state_dir, paths = _paths(state_dir)
    current = status(state_dir)
    if current.running:
        if port is not None and not current.endpoint.endswith(f":{port}"):
            raise ServerError(
                f"The embedded Barbican already runs at {current.endpoint}, "
                f"not on port {port}.",
                "Stop it first (python -m helpers server stop) to move it.")
        LOG.info("embedded Barbican already runs at %s", current.endpoint)
        return current
    stale = _read_pid(paths)
    if stale is not None:
        LOG.warning("removing a stale pid file (process %s is not this "
                    "state folder's server)", stale)
        paths["pid"].unlink(missing_ok=True)

    port = DEFAULT_PORT if port is None else int(port)
    if not 0 < port < 65536:
        raise ServerError(f"Port {port!r} is not a TCP port.",
                          "Choose a number from 1024 to 65535.")
    if not _port_is_free(port):
        raise ServerError(
            f"Port {port} on {HOST} is already in use by another program.",
            f"Stop that program, or choose another port: "
            f"python -m helpers server start --port {port + 1}")
    endpoint = f"http://{HOST}:{port}"
    _prepare_state(state_dir, paths, endpoint)

    env = dict(os.environ, HOME=str(state_dir))
    # The server imports this package: find it even when it is not installed.
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH")) if p)
    with open(paths["log"], "ab") as log:
        os.chmod(paths["log"], 0o600)
        process = subprocess.Popen(
            [sys.executable, "-m", "helpers.wsgi",
             "--state-dir", str(state_dir), "--port", str(port)],
            cwd=state_dir, env=env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, umask=0o077)
    _write_private(paths["pid"], f"{process.pid}\n")
    LOG.info("started embedded Barbican, pid %s, log %s",
             process.pid, paths["log"])

    deadline = time.monotonic() + timeout
    while not _healthy(endpoint, timeout=1.0):
        code = process.poll()
        if code is not None:
            paths["pid"].unlink(missing_ok=True)
            tail = " ".join(_log_tail(paths, 20))
            if "Address already in use" in tail:
                raise ServerError(
                    f"Port {port} on {HOST} was taken while Barbican "
                    f"started.",
                    f"Choose another port with --port. Log: {paths['log']}")
            raise ServerError(
                f"The embedded Barbican stopped while starting "
                f"(exit code {code}).",
                f"Its log says why: {paths['log']}")
        if time.monotonic() > deadline:
            _terminate(process.pid)
            paths["pid"].unlink(missing_ok=True)
            raise ServerError(
                f"The embedded Barbican did not answer within "
                f"{timeout:.0f} s and was stopped.",
                f"Its log may say why: {paths['log']}")
        time.sleep(0.1)
    return status(state_dir)


def _terminate(pid):
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
    deadline = time.monotonic() + STOP_TIMEOUT
    while _is_alive(pid):
        if time.monotonic() > deadline:
            LOG.warning("process %s ignored SIGTERM; killing it", pid)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
        time.sleep(0.05)


def stop(state_dir=None):
    """Stop the embedded Barbican; its data stays in the state folder.

    :returns: ``True`` when a running server was stopped, ``False`` when
        none was running.
    """
    state_dir, paths = _paths(state_dir)
    pid = _read_pid(paths)
    if pid is None or not _is_our_server(pid, state_dir):
        paths["pid"].unlink(missing_ok=True)
        return False
    _terminate(pid)
    paths["pid"].unlink(missing_ok=True)
    LOG.info("stopped embedded Barbican, pid %s", pid)
    return True


def ensure_running(state_dir=None, port=None):
    """Return the status of a healthy embedded server, starting it if needed."""
    current = status(state_dir)
    if current.running and _healthy(current.endpoint):
        return current
    if current.running:
        raise ServerError(
            f"The embedded Barbican (pid {current.pid}) runs but does not "
            f"answer at {current.endpoint}.",
            "Restart it: python -m helpers server stop, then start.")
    return start(state_dir, port)
