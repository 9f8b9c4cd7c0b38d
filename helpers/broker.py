"""The message broker: a private RabbitMQ that carries orders to the worker.

In production, Barbican's API puts every order on a message queue and a
separate ``barbican-worker`` process takes it from there.  The embedded
server's asynchronous mode does the same on 127.0.0.1, with RabbitMQ, the
broker OpenStack deployments use.  It runs as the current user, on ports
chosen free, with everything it keeps under ``<state folder>/rabbitmq/``:
no system service, no ``/var/lib/rabbitmq``, and an Erlang port mapper
(epmd) of its own, so other RabbitMQ nodes on the machine are not touched.

The queue and its messages are durable: an order waiting for the worker
survives a restart of the broker.  Introduced in
``notebooks/02-why-an-order-can-take-time.ipynb``.
"""

import json
import logging
import os
import secrets as _random
import shutil
import time
from pathlib import Path

from helpers import processes
from helpers.errors import ServerError
from helpers.processes import HOST, Part

LOG = logging.getLogger(__name__)

START_TIMEOUT = 60.0
USER = "barbican-lab"
NODE = "barbicanlab@localhost"
# Barbican casts an order to its worker by the worker's server name, so the
# orders wait in this queue: the [queue] topic and server_name defaults.
ORDER_QUEUE = "barbican.workers.barbican.queue"

# Debian's /usr/sbin/rabbitmq-server switches to the rabbitmq user when run
# as root; the script it wraps runs the broker as whoever calls it.
SERVER_SCRIPTS = ("/usr/lib/rabbitmq/bin/rabbitmq-server",
                  "/usr/local/lib/rabbitmq/bin/rabbitmq-server")
SERVER_ENV = "BARBICAN_LAB_RABBITMQ_SERVER"
# A mark on the broker's command line (an Erlang user flag, ignored by
# RabbitMQ) that names the state folder, to tell our broker from others.
STATE_FLAG = "-barbican_lab_state"

CONFIG = """\
# Written by barbican-lab at every start; edits here are overwritten.
listeners.tcp.1 = {host}:{amqp}
# Only this user exists, made at the first start with a random password.
default_user = {user}
default_pass = {password}
log.console = false
log.file.level = info
"""


def _paths(state_dir):
    base = Path(state_dir) / "rabbitmq"
    return {
        "base": base,
        "config": base / "rabbitmq.conf",
        "env": base / "rabbitmq-env.conf",
        "plugins": base / "enabled_plugins",
        "password": base / "password",
        "ports": base / "ports.json",
        "mnesia": base / "mnesia",
        "logs": base / "log",
        "log": base / "broker.log",
        "pid": base / "broker.pid",
        "epmd_pid": base / "epmd.pid",
        "epmd_log": base / "epmd.log",
    }


def _programs():
    """RabbitMQ's start script and Erlang's epmd, or a ServerError."""
    candidates = [os.environ.get(SERVER_ENV), *SERVER_SCRIPTS,
                  shutil.which("rabbitmq-server")]
    server = next((c for c in candidates if c and os.access(c, os.X_OK)),
                  None)
    epmd = shutil.which("epmd") or next(
        (str(p) for p in sorted(Path("/usr/lib/erlang").glob("**/bin/epmd"))
         if os.access(p, os.X_OK)), None)
    if server is None or epmd is None:
        missing = "rabbitmq-server" if server is None else "epmd (Erlang)"
        raise ServerError(
            f"The asynchronous mode needs RabbitMQ, and {missing} is not "
            f"installed.",
            "Install it (Debian: sudo apt-get install rabbitmq-server; "
            "Binder: binder/apt.txt), or start the server without --async.")
    return server, epmd


def installed():
    """True when RabbitMQ and epmd are there to be started."""
    try:
        _programs()
    except ServerError:
        return False
    return True


def require_installed():
    """Raise the :class:`ServerError` that says what to install, if needed."""
    _programs()


def _password(paths):
    # Made once: RabbitMQ creates its user at the first start only.
    if not paths["password"].exists():
        processes.write_private(paths["password"],
                                _random.token_urlsafe(24) + "\n")
    return paths["password"].read_text().strip()


def _ports(paths):
    try:
        return json.loads(paths["ports"].read_text())
    except (OSError, ValueError):
        return None


def _choose_ports(paths, keep_ports):
    """The broker's three ports: the last ones if free, else new ones.

    :param keep_ports: the API and the worker know the AMQP port already
        (a restart of the broker alone): a taken port is an error then.
    """
    ports = _ports(paths)
    # The lab's own epmd outlives a broker that crashed: its port is ours.
    own = {ports.get("epmd")} if ports and _epmd_pid(paths) else set()
    if ports and all(processes.port_is_free(p) or p in own
                     for p in ports.values()):
        return ports
    if ports and keep_ports:
        raise ServerError(
            f"The broker's port {ports['amqp']} on {HOST} was taken by "
            f"another program while the broker was stopped.",
            "Restart the whole server: python -m helpers server stop, then "
            "start --async.")
    ports = {}
    while len(set(ports.values())) < 3:
        ports = {name: processes.free_port()
                 for name in ("amqp", "dist", "epmd")}
    processes.write_private(paths["ports"], json.dumps(ports) + "\n")
    return ports


def _prepare(paths, ports):
    base = paths["base"]
    base.mkdir(mode=0o700, exist_ok=True)
    os.chmod(base, 0o700)
    for folder in ("mnesia", "logs"):
        paths[folder].mkdir(mode=0o700, exist_ok=True)
    processes.write_private(paths["config"], CONFIG.format(
        host=HOST, amqp=ports["amqp"], user=USER,
        password=_password(paths)))
    # An empty environment file, so /etc/rabbitmq/rabbitmq-env.conf is not
    # read; and no plugins (the management plugin would open a web port).
    processes.write_private(paths["env"], "")
    processes.write_private(paths["plugins"], "[].\n")


def _environment(paths, ports):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RABBITMQ_", "ERL_"))}
    base = paths["base"]
    env.update({
        # Erlang keeps its cookie in $HOME/.erlang.cookie.
        "HOME": str(base),
        "ERL_EPMD_PORT": str(ports["epmd"]),
        "ERL_EPMD_ADDRESS": HOST,
        "RABBITMQ_NODENAME": NODE,
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(ports["amqp"]),
        "RABBITMQ_DIST_PORT": str(ports["dist"]),
        "RABBITMQ_CONF_ENV_FILE": str(paths["env"]),
        "RABBITMQ_CONFIG_FILE": str(paths["config"]),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(paths["plugins"]),
        "RABBITMQ_MNESIA_BASE": str(paths["mnesia"]),
        "RABBITMQ_LOG_BASE": str(paths["logs"]),
        "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
        "RABBITMQ_PLUGINS_EXPAND_DIR": str(base / "plugins-expand"),
        # Erlang distribution on loopback only; our own epmd runs already.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
            "-kernel inet_dist_use_interface {127,0,0,1} "
            "-start_epmd false"),
    })
    return env


def transport_url(state_dir):
    """Where Barbican finds the broker, as an oslo.messaging URL.

    It holds the broker's password: it belongs in files of mode 0600 only.
    """
    paths = _paths(state_dir)
    ports = _ports(paths)
    if ports is None:
        raise ServerError("The broker has never been started here.",
                          "Start the server with --async first.")
    return (f"rabbit://{USER}:{_password(paths)}@{HOST}:{ports['amqp']}/")


def _broker_pid(paths, state_dir):
    pid = processes.read_pid(paths["pid"])
    if processes.runs_as(pid, "rabbitmq-server", STATE_FLAG, state_dir):
        return pid
    return None


def _epmd_pid(paths):
    pid = processes.read_pid(paths["epmd_pid"])
    ports = _ports(paths) or {}
    if processes.runs_as(pid, "epmd", f"-port {ports.get('epmd')}"):
        return pid
    return None


def _connect(paths, timeout=2.0):
    import amqp

    ports = _ports(paths)
    connection = amqp.Connection(
        host=f"{HOST}:{ports['amqp']}", userid=USER,
        password=_password(paths), connect_timeout=timeout,
        read_timeout=timeout, write_timeout=timeout)
    connection.connect()
    return connection


def _answers(paths):
    """True when the broker accepts our user's AMQP login."""
    try:
        _connect(paths).close()
        return True
    except Exception as exc:  # any failure means: not ready yet
        LOG.debug("broker not ready: %r", exc)
        return False


def queue_depth(state_dir):
    """How many orders wait in the order queue, and how many workers read it.

    :returns: ``(orders_waiting, workers_consuming)``, ``(0, 0)`` when the
        queue does not exist yet, or ``None`` when the broker does not
        answer.
    """
    import amqp

    paths = _paths(state_dir)
    if _ports(paths) is None:
        return None
    try:
        connection = _connect(paths, timeout=1.0)
    except Exception as exc:
        LOG.debug("broker does not answer: %r", exc)
        return None
    try:
        channel = connection.channel()
        try:
            _, waiting, consumers = channel.queue_declare(ORDER_QUEUE,
                                                          passive=True)
        except amqp.exceptions.NotFound:
            return 0, 0
        return waiting, consumers
    finally:
        try:
            connection.close()
        except Exception:  # the broker may close first; nothing to keep
            pass


def _log_tail(paths, lines=5):
    text = []
    for log in (paths["log"], paths["logs"] / f"{NODE}.log"):
        try:
            text += log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            pass
    return text


def _start_epmd(paths, ports, epmd):
    if _epmd_pid(paths) is not None:
        return
    process = processes.spawn(
        [epmd, "-port", ports["epmd"], "-address", HOST],
        paths["epmd_log"], paths["epmd_pid"],
        env=dict(os.environ, ERL_EPMD_ADDRESS=HOST), cwd=paths["base"])
    deadline = time.monotonic() + 10
    while not processes.answers(ports["epmd"]):
        if process.poll() is not None or time.monotonic() > deadline:
            processes.terminate(process.pid)
            paths["epmd_pid"].unlink(missing_ok=True)
            raise ServerError(
                f"Erlang's port mapper (epmd) did not start on port "
                f"{ports['epmd']}.", f"Its log may say why: "
                f"{paths['epmd_log']}")
        time.sleep(0.05)


def prepare_broker(state_dir):
    """Choose the broker's ports and write its configuration files.

    :returns: the transport URL that points Barbican at the broker.
    :raises ServerError: RabbitMQ is not installed.
    """
    state_dir = Path(state_dir)
    _programs()
    paths = _paths(state_dir)
    if _broker_pid(paths, state_dir) is None:
        paths["base"].mkdir(mode=0o700, exist_ok=True)
        _prepare(paths, _choose_ports(paths, keep_ports=False))
    return transport_url(state_dir)


def start_broker(state_dir, timeout=START_TIMEOUT, keep_ports=False):
    """Start the state folder's RabbitMQ and wait until it takes logins.

    :param keep_ports: reuse the last ports or fail (the API and the worker
        are configured with them already).
    :returns: ``None``; the broker runs.
    :raises ServerError: RabbitMQ is not installed, or it did not start;
        the message names its log.
    """
    state_dir = Path(state_dir)
    paths = _paths(state_dir)
    running = _broker_pid(paths, state_dir)
    if running is not None:
        # Running already, perhaps still booting: wait for it, and never
        # start a second broker whose pid file would hide the first.
        deadline = time.monotonic() + timeout
        while not _answers(paths):
            if not processes.is_alive(running):
                break
            if time.monotonic() > deadline:
                raise ServerError(
                    f"RabbitMQ (pid {running}) runs but does not answer.",
                    "Restart the lab's server: python -m helpers server "
                    "stop, then start.")
            time.sleep(0.2)
        else:
            return
    server, epmd = _programs()
    paths["base"].mkdir(mode=0o700, exist_ok=True)
    ports = _choose_ports(paths, keep_ports)
    _prepare(paths, ports)
    _start_epmd(paths, ports, epmd)
    process = processes.spawn(
        [server, STATE_FLAG, state_dir], paths["log"], paths["pid"],
        env=_environment(paths, ports), cwd=paths["base"])

    def died(code):
        paths["pid"].unlink(missing_ok=True)
        return ServerError(
            f"RabbitMQ stopped while starting (exit code {code}): "
            f"{' '.join(_log_tail(paths, 3))[-300:]}",
            f"Its logs say why: {paths['log']} and {paths['logs']}")

    def hung():
        stop_broker(state_dir)
        return ServerError(
            f"RabbitMQ did not answer within {timeout:.0f} s and was "
            f"stopped.", f"Its logs may say why: {paths['logs']}")

    processes.wait_until_ready(process, lambda: _answers(paths), timeout,
                               died, hung, interval=0.2)
    LOG.info("RabbitMQ answers on %s:%s", HOST, ports["amqp"])


def stop_broker(state_dir):
    """Stop the broker and its epmd; queued orders stay on disk.

    :returns: ``True`` when a running broker was stopped.
    """
    state_dir = Path(state_dir)
    paths = _paths(state_dir)
    pid = _broker_pid(paths, state_dir)
    if pid is not None:
        # The start script stops the Erlang VM cleanly on SIGTERM.
        processes.terminate(pid, group=False)
        LOG.info("stopped RabbitMQ, pid %s", pid)
    paths["pid"].unlink(missing_ok=True)
    epmd = _epmd_pid(paths)
    if epmd is not None:
        processes.terminate(epmd)
    paths["epmd_pid"].unlink(missing_ok=True)
    return pid is not None


def broker_status(state_dir):
    """The broker as ``server status`` shows it: a :class:`Part`."""
    state_dir = Path(state_dir)
    paths = _paths(state_dir)
    pid = _broker_pid(paths, state_dir)
    ports = _ports(paths)
    where = f"RabbitMQ on {HOST}:{ports['amqp']}" if ports else "RabbitMQ"
    if pid is None:
        return Part("broker", "stopped", None, where)
    return Part("broker", "running", pid, where)
