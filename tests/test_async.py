"""The asynchronous mode: a real RabbitMQ, Barbican's API and its worker.

One asynchronous server runs for this module, from its own state folder
and on free ports, and is stopped by its own pids at the end (the last
test checks that no process of it is left).  Nothing here is mocked except
in ``test_missing_rabbitmq_is_explained``, which hides the installed
RabbitMQ from the lookup to see the message a learner without it gets.
"""

import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
import threading
import time

import nbformat
import pytest
from nbclient import NotebookClient

import helpers
from helpers import broker, embedded, processes, worker
from helpers.errors import ServerError

from conftest import ROOT, free_port, require

NOTEBOOK = ROOT / "notebooks" / "02-why-an-order-can-take-time.ipynb"

pytestmark = pytest.mark.slow


def run_cli(*args, state_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "helpers", "--state-dir", str(state_dir),
         *args], capture_output=True, text=True, env=env, timeout=180)


def server_pids(state_dir):
    """Every process of the server: API, broker (and Erlang), epmd, worker."""
    pids = set()
    for pid_file in (state_dir / "server.pid", state_dir / "worker.pid",
                     state_dir / "rabbitmq" / "broker.pid",
                     state_dir / "rabbitmq" / "epmd.pid"):
        pid = processes.read_pid(pid_file)
        if pid is not None and processes.is_alive(pid):
            pids.add(pid)
            pids.update(processes.group_members(pid))
    return pids


@pytest.fixture(scope="module")
def async_server(tmp_path_factory):
    """This module's asynchronous server: a :class:`ServerStatus`."""
    require(broker.installed(), "RabbitMQ (rabbitmq-server)",
            "sudo apt-get install rabbitmq-server")
    state_dir = tmp_path_factory.mktemp("async-state")
    try:
        yield embedded.start(state_dir, free_port(), mode="async")
    finally:
        embedded.stop(state_dir)


@pytest.fixture
def aconn(async_server):
    return helpers.connect(state_dir=async_server.state_dir)


@pytest.fixture
def worker_back(async_server):
    """Whatever a test does to the worker and broker, they run after it."""
    yield
    state_dir = async_server.state_dir
    if not broker.broker_status(state_dir).running:
        embedded.start_broker(state_dir)
    if not worker.worker_status(state_dir).running:
        embedded.resume_worker(state_dir)


def test_status_shows_three_parts_on_loopback(async_server):
    server = embedded.status(async_server.state_dir)
    assert server.mode == "async" and server.running
    assert [(p.name, p.state) for p in server.parts] == [
        ("API", "running"), ("broker", "running"), ("worker", "running")]
    assert all(p.pid for p in server.parts)
    assert server.orders_waiting == 0

    result = run_cli("server", "status", state_dir=async_server.state_dir)
    assert result.returncode == 0, result.stderr
    assert "asynchronous mode" in result.stdout
    for name in ("API:", "broker:", "worker:"):
        line = next(x for x in result.stdout.splitlines()
                    if x.strip().startswith(name))
        assert " running, pid " in line, line
    assert "RabbitMQ on 127.0.0.1:" in result.stdout

    # Every port of the broker and its epmd listens on loopback only.
    ports = broker._ports(broker._paths(async_server.state_dir))
    listening = _listeners()
    for name, port in ports.items():
        addresses = listening.get(port)
        assert addresses, f"nothing listens on the {name} port {port}"
        assert addresses <= {"127.0.0.1", "::1"}, (name, addresses)


def _listeners():
    """{port: {addresses}} of the TCP sockets listening on this machine."""
    found = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                if state != "0A":  # LISTEN
                    continue
                address, port = local.split(":")
                found.setdefault(int(port, 16), set()).add(
                    _address(address, width))
    return found


def _address(hex_address, width):
    raw = bytes.fromhex(hex_address)
    if width == 8:
        return ".".join(str(b) for b in reversed(raw))
    import ipaddress

    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
    return str(ipaddress.IPv6Address(b"".join(words)))


def test_async_state_folder_is_private(async_server):
    for path in [async_server.state_dir,
                 *async_server.state_dir.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path, oct(mode))
    config = (async_server.state_dir / "barbican.conf").read_text()
    assert "transport_url = rabbit://barbican-lab:" in config
    assert "[queue]\nenable = True" in config


def test_order_stays_pending_while_paused_then_goes_active(
        async_server, aconn, worker_back):
    state_dir = async_server.state_dir
    assert helpers.pause_worker(state_dir).state == "paused"

    order = helpers.order_key(aconn)
    assert order.status == "PENDING"
    seen = []
    for _ in range(4):
        seen.append(helpers.get_order(aconn, order).status)
        time.sleep(1)
    assert seen == ["PENDING"] * 4
    assert embedded.status(state_dir).orders_waiting == 1

    progress = []
    resume = threading.Timer(1.0, embedded.resume_worker, (state_dir,))
    resume.start()
    try:
        done = helpers.wait_for_order(
            aconn, order, timeout=60,
            progress=lambda o, elapsed: progress.append(o.status))
    finally:
        resume.join()
    assert done.status == "ACTIVE"
    assert progress[0] == "PENDING" and progress[-1] == "ACTIVE"
    assert set(progress) == {"PENDING", "ACTIVE"}
    assert progress.index("ACTIVE") == len(progress) - 1
    key = helpers.fetch_key(aconn, done)
    assert isinstance(key, bytes) and len(key) == 32
    assert embedded.status(state_dir).orders_waiting == 0


def test_wait_times_out_naming_the_worker(async_server, aconn, worker_back):
    state_dir = async_server.state_dir
    helpers.pause_worker(state_dir)
    order = helpers.order_key(aconn)

    started = time.monotonic()
    with pytest.raises(helpers.OrderTimeout) as caught:
        helpers.wait_for_order(aconn, order, timeout=3)
    assert 3 <= time.monotonic() - started < 10
    message = str(caught.value)
    assert message.startswith(f"Order {order.order_ref} is still PENDING")
    assert "worker" in message and "server status" in message
    assert "not lost" in message

    helpers.resume_worker(state_dir)
    assert helpers.wait_for_order(aconn, order, timeout=60).status == "ACTIVE"


def test_order_fails_clearly_while_the_broker_is_stopped(
        async_server, aconn, worker_back):
    state_dir = async_server.state_dir
    assert embedded.stop_broker(state_dir) is True
    assert embedded.status(state_dir).part("broker").state == "stopped"

    started = time.monotonic()
    with pytest.raises(helpers.LabError) as caught:
        helpers.order_key(aconn)
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert "HTTP 503" in message and "message broker does not answer" in (
        message), message
    assert "Traceback" not in message

    # The order Barbican had recorded says why it will never be ACTIVE.
    failed = [o for o in aconn.key_manager.orders() if o.status == "ERROR"]
    assert failed
    reason = helpers.get_order(aconn, failed[0].order_ref).error_reason
    assert "broker did not answer" in reason

    embedded.start_broker(state_dir)
    order = helpers.wait_for_order(aconn, helpers.order_key(aconn),
                                   timeout=60)
    assert order.status == "ACTIVE"


def test_worker_restart_loses_no_order(async_server, aconn, worker_back):
    state_dir = async_server.state_dir
    # Some orders are being fulfilled, some wait, when the worker stops.
    refs = [helpers.order_key(aconn).order_ref for _ in range(6)]
    helpers.pause_worker(state_dir)
    refs += [helpers.order_key(aconn).order_ref for _ in range(2)]
    helpers.resume_worker(state_dir)
    statuses = [helpers.wait_for_order(aconn, r, timeout=60).status
                for r in refs]
    assert statuses == ["ACTIVE"] * 8


def test_broker_restart_loses_no_order(async_server, aconn, worker_back):
    state_dir = async_server.state_dir
    helpers.pause_worker(state_dir)
    refs = [helpers.order_key(aconn).order_ref for _ in range(3)]
    assert embedded.status(state_dir).orders_waiting == 3

    embedded.stop_broker(state_dir)
    embedded.start_broker(state_dir)
    assert embedded.status(state_dir).orders_waiting == 3  # from disk

    helpers.resume_worker(state_dir)
    # And with the worker running through a broker restart.
    refs += [helpers.order_key(aconn).order_ref for _ in range(3)]
    embedded.stop_broker(state_dir)
    embedded.start_broker(state_dir)
    statuses = [helpers.wait_for_order(aconn, r, timeout=60).status
                for r in refs]
    assert statuses == ["ACTIVE"] * 6


def test_two_broker_starts_at_once_make_one_broker(async_server,
                                                   worker_back):
    import threading
    state_dir = async_server.state_dir
    embedded.stop_broker(state_dir)
    errors = []

    def start():
        try:
            embedded.start_broker(state_dir)
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    starts = [threading.Thread(target=start) for _ in range(2)]
    for thread in starts:
        thread.start()
    for thread in starts:
        thread.join(timeout=180)
    assert errors == []
    pid = processes.read_pid(state_dir / "rabbitmq" / "broker.pid")
    brokers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
               and processes.runs_as(int(p.name), "rabbitmq-server",
                                     str(state_dir))]
    assert [int(p.name) for p in brokers] == [pid]


def test_a_crashed_broker_is_started_again_on_its_ports(async_server,
                                                        aconn, worker_back):
    import signal
    state_dir = async_server.state_dir
    broker_pid = processes.read_pid(state_dir / "rabbitmq" / "broker.pid")
    erlang = [p for p in processes.group_members(broker_pid)
              if p != broker_pid and "beam" in (processes.command_line(p)
                                                or "")]
    assert erlang
    os.kill(erlang[0], signal.SIGKILL)
    processes.terminate(broker_pid)  # its start script, if still there
    # epmd, the lab's own, still holds its port: that is no obstacle.
    server = embedded.start(state_dir)
    assert server.part("broker").running
    order = helpers.wait_for_order(aconn, helpers.order_key(aconn),
                                   timeout=60)
    assert len(helpers.fetch_key(aconn, order)) == 32


def test_connect_restarts_a_worker_that_died(async_server, worker_back):
    state_dir = async_server.state_dir
    pid = embedded.status(state_dir).part("worker").pid
    os.killpg(pid, signal.SIGKILL)  # our own worker's group, by its pid
    deadline = time.monotonic() + 10
    while processes.is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert embedded.status(state_dir).part("worker").state == "stopped"

    conn = helpers.connect(state_dir=state_dir)
    part = embedded.status(state_dir).part("worker")
    assert part.state == "running" and part.pid != pid
    order = helpers.wait_for_order(conn, helpers.order_key(conn), timeout=60)
    assert order.status == "ACTIVE"


def test_paused_worker_stays_paused_through_connect(async_server,
                                                    worker_back):
    state_dir = async_server.state_dir
    helpers.pause_worker(state_dir)
    helpers.connect(state_dir=state_dir)
    assert embedded.status(state_dir).part("worker").state == "paused"


def test_cli_pauses_and_resumes_the_worker(async_server, worker_back):
    state_dir = async_server.state_dir
    paused = run_cli("server", "worker", "pause", state_dir=state_dir)
    assert paused.returncode == 0, paused.stderr
    assert "stay PENDING" in paused.stdout
    status = run_cli("server", "status", state_dir=state_dir)
    assert "worker:       paused" in status.stdout
    assert "server worker resume" in status.stdout

    resumed = run_cli("server", "worker", "resume", state_dir=state_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "runs again" in resumed.stdout
    assert embedded.status(state_dir).part("worker").state == "running"


def test_worker_commands_on_a_synchronous_server(server):
    result = run_cli("server", "worker", "pause", state_dir=server.state_dir)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: There is no worker to pause: the embedded Barbican does not "
        "run in asynchronous mode here. Start it so: python -m helpers "
        "server start --async (stop a synchronous one first).")


def test_starting_the_other_mode_is_refused(async_server):
    with pytest.raises(ServerError, match="already runs in asynchronous"):
        embedded.start(async_server.state_dir, mode="sync")
    with pytest.raises(ServerError, match="'fast' is not a mode"):
        embedded.start(async_server.state_dir, mode="fast")


def test_missing_rabbitmq_is_explained(tmp_path, monkeypatch):
    # Hide the installed RabbitMQ from the lookup: this machine has it.
    monkeypatch.setattr(broker, "SERVER_SCRIPTS", ())
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv(broker.SERVER_ENV, raising=False)
    state_dir = tmp_path / "state"
    with pytest.raises(ServerError) as caught:
        embedded.start(state_dir, free_port(), mode="async")
    assert str(caught.value) == (
        "The asynchronous mode needs RabbitMQ, and rabbitmq-server is not "
        "installed. Install it (Debian: sudo apt-get install "
        "rabbitmq-server; Binder: binder/apt.txt), or start the server "
        "without --async.")
    assert not embedded.status(state_dir).running


def test_switch_without_rabbitmq_keeps_the_running_server(server,
                                                          monkeypatch):
    monkeypatch.setattr(broker, "SERVER_SCRIPTS", ())
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv(broker.SERVER_ENV, raising=False)
    with pytest.raises(ServerError, match="needs RabbitMQ"):
        embedded.switch_mode("async", server.state_dir)
    now = embedded.status(server.state_dir)
    assert now.running and now.mode == "sync" and now.pid == server.pid


def test_worker_controls_pause_and_resume(async_server, worker_back):
    state_dir = async_server.state_dir
    controls = helpers.worker_controls(state_dir)
    assert "worker: <b style='color:#2f855a'>running</b>" in (
        controls.status.value)
    assert not controls.pause_button.disabled
    assert controls.resume_button.disabled

    controls.pause_button.click()
    controls.join(60)
    assert "Paused" in controls.message.value
    assert embedded.status(state_dir).part("worker").state == "paused"
    assert controls.pause_button.disabled
    assert not controls.resume_button.disabled

    controls.resume_button.click()
    controls.join(90)
    assert "Resumed" in controls.message.value
    assert embedded.status(state_dir).part("worker").state == "running"


def _texts(nb):
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                yield output.text
            elif "data" in output:
                yield output.data.get("text/plain", "")


def test_notebook_runs_top_to_bottom_in_a_fresh_kernel(
        async_server, tmp_path, monkeypatch, worker_back):
    work = tmp_path / "notebooks"
    work.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for key in [k for k in os.environ if k.startswith("OS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv(embedded.STATE_ENV, str(async_server.state_dir))
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(work)}}).execute()

    errors = [o for c in nb.cells for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert errors == []
    out = "\n".join(_texts(nb))
    assert f"embedded Barbican {async_server.version} at " \
           f"{async_server.endpoint}" in out
    # The first wait: PENDING while paused, then ACTIVE after the resume.
    wait = next(c for c in nb.cells if "threading.Timer" in c.source)
    lines = "".join(o.text for o in wait.outputs
                    if o.output_type == "stream").split()
    statuses = [w for w in lines if w in ("PENDING", "ACTIVE")]
    assert statuses[0] == "PENDING" and statuses[-1] == "ACTIVE"
    assert statuses.count("ACTIVE") == 1
    assert "32 bytes = 256 bits" in out
    # The second wait timed out with the message that names the worker.
    assert "is still PENDING after 1" in out and "worker" in out
    assert "deleted order" in out
    assert embedded.status(async_server.state_dir).part(
        "worker").state == "running"


def test_switch_mode_keeps_keys_and_port(tmp_path):
    require(broker.installed(), "RabbitMQ (rabbitmq-server)",
            "sudo apt-get install rabbitmq-server")
    state_dir, port = tmp_path / "state", free_port()
    try:
        started = run_cli("server", "start", "--sync", "--port", str(port),
                          state_dir=state_dir)
        assert started.returncode == 0, started.stderr
        conn = helpers.connect(state_dir=state_dir)
        order = helpers.wait_for_order(conn, helpers.order_key(conn))
        key = helpers.fetch_key(conn, order)

        server = embedded.switch_mode("async", state_dir)
        assert server.mode == "async"
        assert server.endpoint == f"http://127.0.0.1:{port}"
        assert [p.state for p in server.parts] == ["running"] * 3
        assert helpers.fetch_key(conn, order.order_ref) == key

        back = embedded.switch_mode("sync", state_dir)
        assert back.mode == "sync" and back.parts[0].running
        assert not server_pids(state_dir) - {back.pid}
        assert helpers.fetch_key(conn, order.order_ref) == key
    finally:
        embedded.stop(state_dir)
    assert server_pids(state_dir) == set()


def test_stop_ends_every_process(async_server):
    state_dir = async_server.state_dir
    pids = server_pids(state_dir)
    # API, broker script and its Erlang VM, epmd, worker and its child.
    assert len(pids) >= 6, pids
    assert embedded.stop(state_dir) is True
    assert [p for p in pids if processes.is_alive(p)] == []
    assert server_pids(state_dir) == set()
    server = embedded.status(state_dir)
    assert [p.state for p in server.parts] == ["stopped"] * 3
