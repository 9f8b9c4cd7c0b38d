"""The embedded Barbican: a real Barbican server in a folder of its own.

Everything the server keeps lives in one state folder (mode 0700): its
configuration, the Fernet key-encryption key (KEK) that protects every
stored secret, the sqlite database, the log and the pid file.  The KEK is
made once, so keys ordered before a restart can still be read after it.

It runs in one of two modes.  Synchronous (``"sync"``): one process, and
Barbican fulfils each order inside the request that submits it, so an
order is ACTIVE by the first look.  Asynchronous (``"async"``): the
production topology on 127.0.0.1, with three parts: the API puts each
order on a message queue (:mod:`helpers.broker`, RabbitMQ) and Barbican's
own worker (:mod:`helpers.worker`) fulfils it later; while the worker is
paused, orders stay PENDING.
"""

import base64
import contextlib
import fcntl
import logging
import os
import secrets as _random
import sqlite3
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from helpers import broker, processes, worker
from helpers.errors import ServerError
from helpers.processes import Part
from helpers.wsgi import PASTE_INI

LOG = logging.getLogger(__name__)

DEFAULT_PORT = 9311
HOST = "127.0.0.1"
STATE_ENV = "BARBICAN_LAB_STATE"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0

SYNC, ASYNC = "sync", "async"
MODES = (SYNC, ASYNC)
MODE_ENV = "BARBICAN_LAB_MODE"
# Chosen from measurements on this machine and what mybinder grants; the
# README's "Asynchronous mode" section has the figures.
DEFAULT_MODE = SYNC
MODE_NAMES = {SYNC: "synchronous", ASYNC: "asynchronous"}

CONFIG = """\
# Written by barbican-lab at every start; edits here are overwritten.
[DEFAULT]
host_href = {endpoint}
db_auto_create = True
log_file = {state_dir}/barbican.log
debug = False
{messaging}
[database]
connection = sqlite:///{state_dir}/barbican.sqlite

[queue]
enable = {queue}

[secretstore]
enabled_secretstore_plugins = store_crypto

[crypto]
enabled_crypto_plugins = simple_crypto

[simple_crypto_plugin]
kek = {kek}
{rabbit}"""

# Asynchronous mode only.
MESSAGING = """\
# Orders travel through the lab's own RabbitMQ (the URL holds its password:
# this file stays mode 0600).
transport_url = {transport_url}
# The worker takes one order at a time: it shares one SQLite file with the
# API (see helpers.adjustments).
executor_thread_pool_size = 1
"""

RABBIT = """
[oslo_messaging_rabbit]
# The order queue and its messages survive a restart of the broker.
amqp_durable_queues = True
# Reconnect within 2 s once the broker is back (the defaults wait up to
# 30 s between attempts).
rabbit_retry_interval = 1
rabbit_retry_backoff = 1
rabbit_interval_max = 2
"""


@dataclass
class ServerStatus:
    """What ``python -m helpers server status`` reports."""

    running: bool
    endpoint: str
    state_dir: Path
    version: str
    pid: int | None = None
    mode: str = SYNC
    parts: list = field(default_factory=list)
    orders_waiting: int | None = None
    #: True when start() found it running already and started nothing.
    already_running: bool = False

    @property
    def cli_environment(self):
        """The two variables that point the ``openstack`` CLI here."""
        return {"OS_AUTH_TYPE": "none", "OS_ENDPOINT": f"{self.endpoint}/v1"}

    def part(self, name):
        """The :class:`Part` called ``name`` ("API", "broker", "worker")."""
        return next((p for p in self.parts if p.name == name), None)

    @property
    def mode_name(self):
        return MODE_NAMES[self.mode]


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


_write_private = processes.write_private


def default_mode():
    """The mode a new server starts in: ``$BARBICAN_LAB_MODE`` or sync."""
    return check_mode(os.environ.get(MODE_ENV) or DEFAULT_MODE)


def check_mode(mode):
    """``mode`` itself when it names a mode, else a :class:`ServerError`."""
    if mode in MODES:
        return mode
    raise ServerError(f"Mode {mode!r} is not a mode of the embedded server.",
                      f"Use 'sync' or 'async' (in ${MODE_ENV} too).")


@contextlib.contextmanager
def _state_lock(state_dir):
    """Hold the state folder's lock: one start or stop at a time.

    Two starts at once would each make a KEK, or each launch a server; the
    second one waits here and then finds the first one's server running.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _sealed_project_key(paths):
    """One project key from the database, sealed with the KEK, or None."""
    if not paths["database"].is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(
                f"file:{paths['database']}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT plugin_meta FROM kek_data WHERE plugin_name LIKE "
                "'%simple_crypto%' AND plugin_meta IS NOT NULL "
                "LIMIT 1").fetchone()
    except sqlite3.Error:
        return None  # no table yet: a new database
    return row[0] if row else None


def _check_kek(state_dir, paths):
    """Refuse a KEK that cannot open the keys already in the database.

    Barbican would start happily and fail every fetch and every order with
    an HTTP 500 that names no cause; this says what is wrong instead.
    """
    from cryptography.fernet import Fernet, InvalidToken

    sealed = _sealed_project_key(paths)
    recover = (f"Put the original kek file back into {state_dir}, or start "
               f"afresh by moving the whole folder away (the keys in it "
               f"cannot be read without their kek).")
    if not paths["kek"].exists():
        if sealed is None:
            return
        raise ServerError(
            "The key-encryption key (kek) is missing, but the database "
            "holds keys sealed with it.", recover)
    try:
        kek = Fernet(paths["kek"].read_text().strip().encode())
    except (ValueError, UnicodeDecodeError):
        raise ServerError(
            f"{paths['kek']} is not a Fernet key (url-safe base64 of 32 "
            f"bytes).", recover) from None
    if sealed is not None:
        try:
            kek.decrypt(sealed.encode() if isinstance(sealed, str)
                        else sealed)
        except InvalidToken:
            raise ServerError(
                f"{paths['kek']} is not the key-encryption key that sealed "
                f"the keys in this state folder's database.",
                recover) from None


def _prepare_state(state_dir, paths, endpoint, transport_url=None):
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)
    _check_kek(state_dir, paths)
    if not paths["kek"].exists():
        # A Fernet key: url-safe base64 of 32 random bytes.  Plain base64
        # would only fail later, at the first order.
        kek = base64.urlsafe_b64encode(_random.token_bytes(32)).decode()
        _write_private(paths["kek"], kek + "\n")
        LOG.info("made a new key-encryption key in %s", paths["kek"])
    os.chmod(paths["kek"], 0o600)
    kek = paths["kek"].read_text().strip()
    messaging = (MESSAGING.format(transport_url=transport_url)
                 if transport_url else "")
    _write_private(paths["config"], CONFIG.format(
        endpoint=endpoint, state_dir=state_dir, kek=kek,
        messaging=messaging, queue=bool(transport_url),
        rabbit=RABBIT if transport_url else ""))
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


def _configured_mode(paths):
    try:
        text = paths["config"].read_text()
    except OSError:
        return SYNC
    return ASYNC if "\ntransport_url = " in text else SYNC


def _read_pid(paths):
    return processes.read_pid(paths["pid"])


_is_alive = processes.is_alive


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


# Straight to 127.0.0.1: through an http_proxy the health check would hang.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _healthy(endpoint, timeout=2.0):
    try:
        with _direct.open(f"{endpoint}/healthcheck",
                          timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


_port_is_free = processes.port_is_free


def _log_tail(paths, lines=5):
    try:
        return paths["log"].read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def status(state_dir=None):
    """Report whether the embedded Barbican runs, and where.

    In asynchronous mode the status also has each part (API, broker,
    worker) and the number of orders waiting in the queue.

    :param state_dir: the state folder; the default one when ``None``.
    :returns: a :class:`ServerStatus`; ``running`` says whether the API
        runs.
    """
    state_dir, paths = _paths(state_dir)
    pid = _read_pid(paths)
    running = pid is not None and _is_our_server(pid, state_dir)
    endpoint = (_configured_endpoint(paths)
                or f"http://{HOST}:{DEFAULT_PORT}")
    mode = _configured_mode(paths)
    parts = [Part("API", "running" if running else "stopped",
                  pid if running else None, endpoint)]
    waiting = None
    if mode == ASYNC:
        parts += [broker.broker_status(state_dir),
                  worker.worker_status(state_dir)]
        if parts[1].running:
            depth = broker.queue_depth(state_dir)
            waiting = depth[0] if depth else None
    return ServerStatus(running=running, endpoint=endpoint,
                        state_dir=state_dir, version=barbican_version(),
                        pid=pid if running else None, mode=mode,
                        parts=parts, orders_waiting=waiting)


def start(state_dir=None, port=None, timeout=START_TIMEOUT, mode=None):
    """Start the embedded Barbican in the background and wait until it answers.

    Starting a server that already runs is fine: its status comes back.
    In asynchronous mode, parts that have stopped are started again (a
    worker paused on purpose stays paused).

    :param state_dir: the state folder; the default one when ``None``.
    :param port: the port on 127.0.0.1; when ``None``, the port it used
        last time, or 9311 for a new state folder.
    :param timeout: seconds to wait for the first healthy answer.
    :param mode: ``"sync"`` or ``"async"``; when ``None``, a running
        server keeps its mode and a new one starts in
        :func:`default_mode`.
    :returns: a :class:`ServerStatus` of the running server.
    :raises ServerError: the port is taken, the server already runs in the
        other mode, RabbitMQ is missing (asynchronous mode), or a part died
        or hung on its way up; the message names the log.
    """
    state_dir, _ = _paths(state_dir)
    with _state_lock(state_dir):
        return _start_locked(state_dir, port, timeout, mode)


def _start_locked(state_dir, port, timeout, mode):
    # start() itself, under the state folder's lock.
    if mode is not None:
        check_mode(mode)
    state_dir, paths = _paths(state_dir)
    current = status(state_dir)
    if current.running:
        if port is not None and not current.endpoint.endswith(f":{port}"):
            raise ServerError(
                f"The embedded Barbican already runs at {current.endpoint}, "
                f"not on port {port}.",
                "Stop it first (python -m helpers server stop) to move it.")
        if mode is not None and mode != current.mode:
            raise ServerError(
                f"The embedded Barbican already runs in "
                f"{current.mode_name} mode at {current.endpoint}.",
                f"Stop it first (python -m helpers server stop), then start "
                f"it with --{mode}.")
        LOG.info("embedded Barbican already runs at %s", current.endpoint)
        if current.mode == ASYNC:
            _start_missing_parts(state_dir, timeout)
            current = status(state_dir)
        current.already_running = True
        return current
    mode = mode or default_mode()
    stale = _read_pid(paths)
    if stale is not None:
        LOG.warning("removing a stale pid file (process %s is not this "
                    "state folder's server)", stale)
        paths["pid"].unlink(missing_ok=True)

    if port is None:
        # A server restarted without a port comes back where it was.
        configured = _configured_endpoint(paths)
        port = (int(configured.rsplit(":", 1)[1]) if configured
                else DEFAULT_PORT)
    port = int(port)
    if not 0 < port < 65536:
        raise ServerError(f"Port {port!r} is not a TCP port.",
                          "Choose a number from 1024 to 65535.")
    if not _port_is_free(port):
        raise ServerError(
            f"Port {port} on {HOST} is already in use by another program.",
            f"Stop that program, or choose another port: "
            f"python -m helpers server start --port {port + 1}")
    endpoint = f"http://{HOST}:{port}"
    if mode == ASYNC:
        _start_async(state_dir, paths, port, endpoint, timeout)
    else:
        _prepare_state(state_dir, paths, endpoint)
        _start_api(state_dir, paths, port, endpoint, timeout)
    return status(state_dir)


def _start_api(state_dir, paths, port, endpoint, timeout):
    """Start the API process and wait for its first healthy answer."""
    process = processes.spawn(
        [sys.executable, "-m", "helpers.wsgi", "--state-dir", state_dir,
         "--port", port], paths["log"], paths["pid"],
        env=processes.server_env(state_dir), cwd=state_dir)
    LOG.info("started embedded Barbican, pid %s, log %s",
             process.pid, paths["log"])

    def died(code):
        paths["pid"].unlink(missing_ok=True)
        if "Address already in use" in " ".join(_log_tail(paths, 20)):
            return ServerError(
                f"Port {port} on {HOST} was taken while Barbican started.",
                f"Choose another port with --port. Log: {paths['log']}")
        return ServerError(
            f"The embedded Barbican stopped while starting (exit code "
            f"{code}).", f"Its log says why: {paths['log']}")

    def hung():
        _terminate(process.pid)
        paths["pid"].unlink(missing_ok=True)
        return ServerError(
            f"The embedded Barbican did not answer within {timeout:.0f} s "
            f"and was stopped.", f"Its log may say why: {paths['log']}")

    processes.wait_until_ready(process, lambda: _healthy(endpoint, 1.0),
                               timeout, died, hung)


def _start_async(state_dir, paths, port, endpoint, timeout):
    """Start the broker, the API and the worker, overlapping their waits.

    The API needs nothing from the broker until the first order, and the
    worker connects to the broker on its own once it answers, so the broker
    boots while the other two start.  Only the worker waits for the API,
    which creates the database they share.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _prepare_state(state_dir, paths, endpoint,
                   transport_url=broker.prepare_broker(state_dir))
    # A fresh start runs all three parts, a previously paused worker too.
    worker.forget_pause(state_dir)
    failures = []

    def start_broker():
        try:
            broker.start_broker(state_dir, timeout, keep_ports=True)
        except Exception as exc:  # any failure, told in the main thread
            failures.append(exc)

    booting = threading.Thread(target=start_broker, name="broker-start")
    booting.start()
    try:
        try:
            _start_api(state_dir, paths, port, endpoint, timeout)
            process = worker.launch_worker(state_dir)
        finally:
            booting.join()
        if failures:
            if isinstance(failures[0], ServerError):
                raise failures[0]
            raise ServerError(
                f"The message broker could not start: {failures[0]}.",
                f"Its log is in {state_dir / 'rabbitmq'}.") from failures[0]
        worker.wait_for_worker(state_dir, process, timeout)
    except BaseException:
        # Half a server is no use: stop whatever parts did start (the lock
        # is already held by this start).
        _stop_locked(state_dir)
        raise


def _start_missing_parts(state_dir, timeout=START_TIMEOUT):
    """Start the broker or the worker if it stopped (not a paused worker)."""
    if not broker.broker_status(state_dir).running:
        LOG.warning("the broker had stopped; starting it again")
        broker.start_broker(state_dir, timeout, keep_ports=True)
    if worker.worker_status(state_dir).state == "stopped":
        LOG.warning("the worker had stopped; starting it again")
        worker.start_worker(state_dir, timeout)


_terminate = processes.terminate


def stop(state_dir=None):
    """Stop the embedded Barbican; its data stays in the state folder.

    In asynchronous mode the worker stops first (it finishes the order in
    hand), then the API, then the broker, which keeps the orders still
    waiting in its queue on disk for the next start.

    :returns: ``True`` when a running server (or any part of one) was
        stopped, ``False`` when none was running.
    """
    state_dir, _ = _paths(state_dir)
    if not state_dir.is_dir():
        return False  # never started here: nothing to stop, nothing to make
    with _state_lock(state_dir):
        return _stop_locked(state_dir)


def _stop_locked(state_dir):
    # stop() itself, under the state folder's lock.
    state_dir, paths = _paths(state_dir)
    stopped = worker.stop_worker(state_dir)
    pid = _read_pid(paths)
    if pid is not None and _is_our_server(pid, state_dir):
        _terminate(pid)
        LOG.info("stopped embedded Barbican, pid %s", pid)
        stopped = True
    paths["pid"].unlink(missing_ok=True)
    return broker.stop_broker(state_dir) or stopped


def ensure_running(state_dir=None, port=None, mode=None):
    """Return the status of a healthy embedded server, starting it if needed.

    In asynchronous mode a stopped broker or worker is started again; a
    worker paused on purpose stays paused.

    :param mode: as for :func:`start`.
    """
    current = status(state_dir)
    if current.running and not _healthy(current.endpoint):
        # Perhaps still starting: a start under way holds the state
        # folder's lock until its server answers or dies.
        with _state_lock(current.state_dir):
            current = status(state_dir)
    if current.running and _healthy(current.endpoint):
        if current.mode == ASYNC or (mode is not None
                                     and mode != current.mode):
            return start(state_dir, port, mode=mode)
        return current
    if current.running:
        raise ServerError(
            f"The embedded Barbican (pid {current.pid}) runs but does not "
            f"answer at {current.endpoint}.",
            "Restart it: python -m helpers server stop, then start.")
    return start(state_dir, port, mode=mode)


def _running_async(state_dir, action):
    current = status(state_dir)
    if not current.running or current.mode != ASYNC:
        raise ServerError(
            f"There is no worker to {action}: the embedded Barbican does "
            f"not run in asynchronous mode here.",
            "Start it so: python -m helpers server start --async (stop a "
            "synchronous one first).")
    return current


def pause_worker(state_dir=None):
    """Stop only Barbican's worker: new orders stay PENDING, in the queue.

    CLI: ``python -m helpers server worker pause``

    :returns: the worker's :class:`Part` (``"paused"``).
    :raises ServerError: no asynchronous server runs here.
    """
    state_dir, _ = _paths(state_dir)
    with _state_lock(state_dir):
        _running_async(state_dir, "pause")
        return worker.pause_worker(state_dir)


def resume_worker(state_dir=None, timeout=START_TIMEOUT):
    """Start Barbican's worker again; it fulfils the orders that waited.

    CLI: ``python -m helpers server worker resume``

    :returns: the worker's :class:`Part` (``"running"``).
    :raises ServerError: no asynchronous server runs here, its broker is
        stopped, or the worker could not start.
    """
    state_dir, _ = _paths(state_dir)
    with _state_lock(state_dir):
        current = _running_async(state_dir, "resume")
        if not current.part("broker").running:
            raise ServerError(
                "The worker cannot start: the message broker is stopped, so "
                "there is no queue to read.",
                "Start the missing parts: python -m helpers server start")
        return worker.resume_worker(state_dir, timeout)


def stop_broker(state_dir=None):
    """Stop only the message broker (to see what the API does without it).

    :returns: ``True`` when it was running.
    """
    state_dir, _ = _paths(state_dir)
    with _state_lock(state_dir):
        return broker.stop_broker(state_dir)


def start_broker(state_dir=None, timeout=START_TIMEOUT):
    """Start the message broker again, on the ports the API and worker know.

    :raises ServerError: it could not start.
    """
    state_dir, _ = _paths(state_dir)
    with _state_lock(state_dir):
        broker.start_broker(state_dir, timeout, keep_ports=True)
        return status(state_dir)


def switch_mode(mode, state_dir=None, port=None):
    """Run the embedded server in ``mode``, restarting it if need be.

    A server running in the other mode is stopped and started again on the
    same port.  Keys and orders stay: both modes use the same state folder
    and database.  Introduced in
    ``notebooks/02-why-an-order-can-take-time.ipynb``.

    :param mode: ``"sync"`` or ``"async"``.
    :returns: the :class:`ServerStatus` of the server now running.
    :raises ServerError: the server could not start in that mode.
    """
    check_mode(mode)
    current = status(state_dir)
    if not current.running or current.mode == mode:
        return start(state_dir, port, mode=mode)
    if mode == ASYNC:
        broker.require_installed()  # before stopping what works
    if port is None:
        port = int(current.endpoint.rsplit(":", 1)[1])
    LOG.info("switching the embedded Barbican to %s mode", MODE_NAMES[mode])
    # One step under the lock: no other kernel may start a server between
    # the stop and the start.
    with _state_lock(current.state_dir):
        _stop_locked(current.state_dir)
        try:
            return _start_locked(current.state_dir, port, START_TIMEOUT,
                                 mode)
        except ServerError:
            # Leave the learner a working server, in the mode it had; the
            # error that matters is the first one.
            LOG.warning("could not switch; starting the %s server again",
                        current.mode_name)
            try:
                _start_locked(current.state_dir, port, START_TIMEOUT,
                              current.mode)
            except ServerError:
                LOG.exception("the %s server did not start again either",
                              current.mode_name)
            raise
