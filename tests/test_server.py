"""The embedded server's life: start, status, stop, restart, failures.

Each test here runs its own server in its own state folder, so the
session's server is never disturbed.
"""

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import helpers
from helpers import embedded
from helpers.errors import ServerError

from conftest import ROOT, free_port


def run_cli(*args, state_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "helpers", "--state-dir", str(state_dir),
         *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def own_server(tmp_path):
    state_dir = tmp_path / "state"
    port = free_port()
    yield state_dir, port
    embedded.stop(state_dir)


def test_start_status_stop_and_restart_keeps_keys(own_server):
    state_dir, port = own_server
    started = run_cli("server", "start", "--port", str(port),
                      state_dir=state_dir)
    assert started.returncode == 0, started.stderr
    endpoint = f"http://127.0.0.1:{port}"
    assert f"running at {endpoint}" in started.stdout
    assert "export OS_AUTH_TYPE=none" in started.stdout
    assert f"export OS_ENDPOINT={endpoint}/v1" in started.stdout

    again = run_cli("server", "start", "--port", str(port),
                    state_dir=state_dir)
    assert again.returncode == 0
    assert "already runs" in again.stdout

    status = run_cli("server", "status", state_dir=state_dir)
    assert status.returncode == 0
    assert "running" in status.stdout and endpoint in status.stdout
    assert str(state_dir) in status.stdout
    assert embedded.barbican_version() in status.stdout

    conn = helpers.connect(state_dir=state_dir)
    order = helpers.wait_for_order(conn, helpers.order_key(conn))
    assert order.order_ref.startswith(f"{endpoint}/v1/orders/")
    assert order.secret_ref.startswith(f"{endpoint}/v1/secrets/")
    key = helpers.fetch_key(conn, order)

    stopped = run_cli("server", "stop", state_dir=state_dir)
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    assert run_cli("server", "status", state_dir=state_dir).returncode == 3
    assert run_cli("server", "stop", state_dir=state_dir).stdout.startswith(
        "The embedded Barbican was not running")

    embedded.start(state_dir, port)
    conn = helpers.connect(state_dir=state_dir)
    assert helpers.fetch_key(conn, order.order_ref) == key


def test_state_folder_is_private(server):
    state_dir = server.state_dir
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(state_dir) == 0o700
    for name in ("kek", "barbican.sqlite", "barbican.conf", "barbican.log"):
        assert mode(state_dir / name) == 0o600, name
    for path in state_dir.iterdir():
        assert mode(path) & 0o077 == 0, path


def test_port_held_by_another_program(own_server):
    state_dir, port = own_server
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen()
        result = run_cli("server", "start", "--port", str(port),
                         state_dir=state_dir)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in lines[0]
    assert "--port" in lines[0]
    assert "Traceback" not in result.stderr


def test_stale_pid_file_is_replaced(own_server):
    state_dir, port = own_server
    state_dir.mkdir(mode=0o700)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (state_dir / "server.pid").write_text(f"{dead.pid}\n")
    assert not embedded.status(state_dir).running
    server = embedded.start(state_dir, port)
    assert server.running and server.pid != dead.pid


def test_pid_of_another_program_is_not_mistaken_for_the_server(own_server):
    state_dir, port = own_server
    state_dir.mkdir(mode=0o700)
    (state_dir / "server.pid").write_text(f"{os.getpid()}\n")
    assert not embedded.status(state_dir).running
    assert embedded.stop(state_dir) is False  # and this process lives on
    assert not (state_dir / "server.pid").exists()


def test_server_that_dies_on_start_says_so_with_the_log(own_server):
    state_dir, port = own_server
    state_dir.mkdir(mode=0o700)
    # A folder where the database file should be: sqlite cannot open it.
    (state_dir / "barbican.sqlite").mkdir()
    result = run_cli("server", "start", "--port", str(port),
                     state_dir=state_dir)
    assert result.returncode == 1
    assert "stopped while starting" in result.stderr
    assert str(state_dir / "barbican.log") in result.stderr
    assert "Traceback" not in result.stderr
    assert not (state_dir / "server.pid").exists()


def test_moving_a_running_server_to_another_port_is_refused(server):
    with pytest.raises(ServerError, match="already runs at"):
        embedded.start(server.state_dir, free_port())


def test_state_folder_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(embedded.STATE_ENV, str(tmp_path / "from-env"))
    assert embedded.status().state_dir == (tmp_path / "from-env").resolve()
    monkeypatch.delenv(embedded.STATE_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert embedded.status().state_dir == (
        tmp_path / "data" / "barbican-lab").resolve()


def test_server_stopped_under_a_connection(own_server):
    state_dir, port = own_server
    embedded.start(state_dir, port)
    conn = helpers.connect(state_dir=state_dir)
    embedded.stop(state_dir)
    with pytest.raises(helpers.ConnectError) as caught:
        helpers.order_key(conn)
    assert str(caught.value) == (
        "Could not order a key: nothing answers at Barbican. Check that the "
        "server runs and the URL is right (embedded: python -m helpers "
        "server start).")


def test_two_starts_at_once_make_one_server_and_one_kek(own_server):
    state_dir, port = own_server
    starts = [subprocess.Popen(
        [sys.executable, "-m", "helpers", "--state-dir", str(state_dir),
         "server", "start", "--port", str(port)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=180), *p.communicate()) for p in starts]
    assert [code for code, _, _ in results] == [0, 0], results
    outs = [out for _, out, _ in results]
    assert sum("already runs" in out for out in outs) == 1, outs
    assert sum("is running at" in out for out in outs) == 1, outs
    server = embedded.status(state_dir)
    assert server.running
    conn = helpers.connect(state_dir=state_dir)
    order = helpers.wait_for_order(conn, helpers.order_key(conn))
    assert len(helpers.fetch_key(conn, order)) == 32
    assert sorted(p.name for p in state_dir.glob("*.tmp")) == []


def test_restart_without_a_port_comes_back_on_the_same_port(own_server):
    state_dir, port = own_server
    embedded.start(state_dir, port)
    embedded.stop(state_dir)
    assert embedded.start(state_dir).endpoint == f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("damage", ["missing", "replaced", "garbage"])
def test_a_kek_that_cannot_open_the_keys_is_refused(own_server, damage):
    state_dir, port = own_server
    embedded.start(state_dir, port)
    conn = helpers.connect(state_dir=state_dir)
    helpers.wait_for_order(conn, helpers.order_key(conn))
    embedded.stop(state_dir)
    kek = state_dir / "kek"
    original = kek.read_text()
    if damage == "missing":
        kek.unlink()
    elif damage == "replaced":
        import base64
        kek.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode())
    else:
        kek.write_text("garbage")
    result = run_cli("server", "start", "--port", str(port),
                     state_dir=state_dir)
    assert result.returncode == 1
    assert "Put the original kek file back" in result.stderr
    assert "Traceback" not in result.stderr
    assert not embedded.status(state_dir).running
    if damage == "missing":
        assert not kek.exists()  # no new KEK was made in its place
    kek.write_text(original)
    assert embedded.start(state_dir, port).running


def test_connect_waits_for_a_server_that_is_still_starting(own_server):
    state_dir, port = own_server
    starting = subprocess.Popen(
        [sys.executable, "-m", "helpers", "--state-dir", str(state_dir),
         "server", "start", "--port", str(port)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid_file = state_dir / "server.pid"
        import time
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pid_file.exists()
        conn = helpers.connect(state_dir=state_dir)  # no "does not answer"
        assert helpers.describe(conn).endswith(f"127.0.0.1:{port}")
    finally:
        assert starting.wait(timeout=120) == 0


def test_a_proxy_in_the_environment_is_not_asked_for_127_0_0_1(
        own_server, monkeypatch):
    state_dir, port = own_server
    # A proxy address where nothing listens: asking it would fail at once.
    dead = free_port()
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{dead}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert embedded.start(state_dir, port).running
    conn = helpers.connect(state_dir=state_dir)
    order = helpers.wait_for_order(conn, helpers.order_key(conn))
    assert len(helpers.fetch_key(conn, order)) == 32


def test_server_process_loads_no_learner_side_libraries():
    # pandas, openstacksdk and ipywidgets cost the server ~60 MB and ~0.7 s
    # at every start; it needs none of them.
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, helpers.wsgi, helpers.worker; "
         "print(sorted(m for m in ('pandas', 'openstack', 'ipywidgets') "
         "if m in sys.modules))"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
        text=True, timeout=60)
    assert probe.stdout.strip() == "[]", probe.stderr


def test_process_marks_end_at_word_and_path_boundaries():
    from helpers import processes
    me = os.getpid()
    line = processes.command_line(me)
    assert line is not None
    first = line.split()[0]
    assert processes.runs_as(me, first)
    assert not processes.runs_as(me, first[:-1])  # a prefix is not a mark


def test_broker_ports_avoid_the_ephemeral_range():
    from helpers import processes
    assert all(20000 <= processes.free_port() < 32000 for _ in range(20))


def test_a_reserved_port_is_explained_not_a_permission_error():
    # As an ordinary user (CI runs as root, which may bind any port), with
    # the system's Python (the venv's may sit in root's private home) and
    # a world-readable copy of the package (so may the clone).
    import shutil
    import tempfile
    from conftest import require
    python = "/usr/bin/python3"
    require(os.path.exists(python), "Debian's python3", "apt-get install "
            "python3")
    if os.geteuid() != 0:
        pytest.skip("needs root to run the probe as another user")
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        shutil.copytree(ROOT / "helpers", Path(folder) / "helpers")
        probe = subprocess.run(
            [python, "-S", "-c", "from helpers import processes\n"
             "try:\n    processes.port_is_free(80)\n"
             "except Exception as exc:\n    print(type(exc).__name__, exc)"],
            env={"PYTHONPATH": folder, "PATH": os.environ["PATH"]},
            cwd=folder, capture_output=True, text=True, timeout=60,
            user=65534)
    assert probe.stdout.strip() == (
        "ServerError Port 80 is reserved for the system administrator on "
        "this machine. Choose a port from 1024 to 65535.")


def test_a_missing_dependency_is_named_not_hidden():
    probe = subprocess.run(
        [sys.executable, "-c", "import sys\n"
         "sys.modules['keystoneauth1'] = None\n"
         "import helpers\n"
         "try:\n    helpers.explain\n"
         "except Exception as exc:\n    print(type(exc).__name__, exc)"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
        text=True, timeout=60)
    assert probe.stdout.startswith("ModuleNotFoundError")
    assert "keystoneauth1" in probe.stdout


def test_identity_headers_a_client_sends_are_dropped():
    from helpers.wsgi import LAB_PROJECT_ID, LAB_ROLES, with_lab_identity
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        return []

    with_lab_identity(app)({
        "HTTP_X_SYSTEM_SCOPE": "all", "HTTP_X_SERVICE_ROLES": "admin",
        "HTTP_X_PROJECT_NAME": "other", "HTTP_X_ROLES": "admin",
        "HTTP_X_PROJECT_ID": "other", "HTTP_X_OPENSTACK_REQUEST_ID": "r1",
        "HTTP_ACCEPT": "application/json"}, None)
    assert seen["HTTP_X_PROJECT_ID"] == LAB_PROJECT_ID
    assert seen["HTTP_X_ROLES"] == LAB_ROLES
    for dropped in ("HTTP_X_SYSTEM_SCOPE", "HTTP_X_SERVICE_ROLES",
                    "HTTP_X_PROJECT_NAME"):
        assert dropped not in seen
    assert seen["HTTP_X_OPENSTACK_REQUEST_ID"] == "r1"  # not identity
    assert seen["HTTP_ACCEPT"] == "application/json"
