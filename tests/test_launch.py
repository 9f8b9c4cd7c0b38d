"""Launching the lab anywhere: Binder's start script, Binder's dependency
list, ``python3 lab.py`` on a fresh copy, and connect()'s word on Binder.

No container engine runs here, so Binder's ``start`` is run directly, as
repo2docker's entrypoint runs it: ``binder/start COMMAND...``.
"""

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

import helpers
from helpers import embedded

from conftest import ROOT, free_port, require

START = ROOT / "binder" / "start"
NOTEBOOK = "notebooks/01-order-an-aes-key.ipynb"

# The exercise's commands exactly as the notebook and README give them;
# only the two hrefs are carried from one command to the next.
EXERCISE = """\
set -e
ORDER_REF=$(openstack secret order create key --name "Order for an AES key" \
--algorithm aes --bit-length 256 -c "Order href" -f value)
echo "order: $ORDER_REF"
openstack secret order get $ORDER_REF
SECRET_REF=$(openstack secret order get $ORDER_REF -c "Secret href" -f value)
openstack secret get --file ordered_key --payload_content_type \
'application/octet-stream' $SECRET_REF
hexdump -C ordered_key
exit 42
"""


def start_env(state_dir, port, **extra):
    """An environment with no cloud, this test's state folder and port."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OS_", "BINDER_"))}
    env.update(BARBICAN_LAB_STATE=str(state_dir),
               BARBICAN_LAB_PORT=str(port), PYTHONPATH=str(ROOT))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env.update(extra)
    return env


def test_start_script_serves_the_exercise_cli_verbatim(tmp_path):
    require(shutil.which("hexdump"), "hexdump",
            "apt-get install bsdextrautils")
    require(shutil.which("openstack", path=start_env(tmp_path, 0)["PATH"]),
            "the openstack CLI", "pip install -r requirements.txt")
    state_dir, port = tmp_path / "state", free_port()
    try:
        began = time.monotonic()
        result = subprocess.run(
            [str(START), "bash", "-c", EXERCISE], cwd=tmp_path,
            env=start_env(state_dir, port), capture_output=True, text=True,
            timeout=300)
        took = time.monotonic() - began
        assert result.returncode == 42, result.stderr
        endpoint = f"http://127.0.0.1:{port}"
        assert f"order: {endpoint}/v1/orders/" in result.stdout
        assert "| Status         | ACTIVE" in result.stdout
        key = (tmp_path / "ordered_key").read_bytes()
        assert len(key) == 32
        assert result.stdout.endswith("00000020\n")
        status = embedded.status(state_dir)
        assert status.running and status.endpoint == endpoint
        for path in state_dir.iterdir():  # start.log included
            assert path.stat().st_mode & 0o077 == 0, path
        # The notebook's connect() finds the same server and the same key.
        conn = helpers.connect(state_dir=state_dir)
        order_ref = re.search(r"order: (\S+)", result.stdout).group(1)
        assert helpers.fetch_key(conn, order_ref) == key
        print(f"start script plus the five commands: {took:.1f} s")
    finally:
        embedded.stop(state_dir)


def test_start_script_leaves_a_configured_cloud_alone(tmp_path):
    state_dir = tmp_path / "state"
    result = subprocess.run(
        [str(START), "bash", "-c", "env; exit 3"], cwd=tmp_path,
        env=start_env(state_dir, free_port(), OS_CLOUD="labcloud"),
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "OS_CLOUD=labcloud" in result.stdout
    assert "OS_AUTH_TYPE" not in result.stdout
    assert "OS_ENDPOINT" not in result.stdout
    assert not state_dir.exists()


def test_start_script_hands_over_even_when_barbican_cannot_start(tmp_path):
    state_dir = tmp_path / "state"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(START), "bash", "-c", "echo handed over"], cwd=tmp_path,
            env=start_env(state_dir, port), capture_output=True, text=True,
            timeout=120)
    assert result.returncode == 0
    assert result.stdout == "handed over\n"
    assert result.stderr.startswith(
        "barbican-lab: the embedded Barbican did not start: error: Port "
        f"{port} on 127.0.0.1 is already in use")
    assert not embedded.status(state_dir).running


def test_start_script_keeps_barbican_off_an_http_proxy(tmp_path):
    # A proxy that answers nothing: asked for 127.0.0.1, everything hangs.
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    env = start_env(tmp_path / "state", free_port(), http_proxy=dead_proxy,
                    https_proxy=dead_proxy, HTTP_PROXY=dead_proxy)
    for name in ("no_proxy", "NO_PROXY"):
        env.pop(name, None)
    # The exercise's first command, then the href it gave.
    create = "\n".join(EXERCISE.splitlines()[1:3] + ["echo $ORDER_REF"])
    try:
        result = subprocess.run(
            [str(START), "bash", "-c", create],
            cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120)
        assert result.returncode == 0, result.stderr
        assert "barbican-lab:" not in result.stderr
        assert "/v1/orders/" in result.stdout
    finally:
        embedded.stop(tmp_path / "state")


def test_lab_keeps_loopback_off_an_http_proxy():
    lab = load_lab_module()
    env = {"https_proxy": "http://proxy:3128", "no_proxy": "example.org"}
    lab.bypass_proxy_for_loopback(env)
    assert env["no_proxy"] == "example.org,127.0.0.1,localhost"
    assert env["NO_PROXY"] == "127.0.0.1,localhost"
    quiet = {"PATH": "/usr/bin"}
    lab.bypass_proxy_for_loopback(quiet)
    assert quiet == {"PATH": "/usr/bin"}


def _pinned(path):
    """{name: version} of a pip-compile output, and its unpinned names."""
    pins, unsafe, in_unsafe = {}, set(), False
    for line in path.read_text().splitlines():
        if "considered to be unsafe" in line:
            in_unsafe = True
        elif in_unsafe and line.startswith("# "):
            unsafe.add(canonicalize_name(line[2:].strip()))
        elif "==" in line and not line.startswith("#"):
            name, version = line.split("#")[0].split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins, unsafe


@pytest.mark.slow
def test_binder_requirements_resolve_to_the_pinned_set(tmp_path):
    # repo2docker runs pip from the repository root; so does this.
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run",
         "--ignore-installed", "--quiet", "--disable-pip-version-check",
         "--report", str(report), "-r", "binder/requirements.txt"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    resolved = {canonicalize_name(item["metadata"]["name"]): item
                for item in json.loads(report.read_text())["install"]}
    pins, unsafe = _pinned(ROOT / "requirements.txt")

    package = resolved.pop("barbican-lab")
    assert package["download_info"]["url"] == ROOT.as_uri()
    assert package["download_info"]["dir_info"] == {"editable": True}
    # pip-compile leaves these out on purpose (setuptools, pip); they may
    # come in as dependencies, at whatever version the index has.
    for name in unsafe:
        resolved.pop(name, None)
    assert {name: item["metadata"]["version"]
            for name, item in resolved.items()} == pins


def load_lab_module():
    spec = importlib.util.spec_from_file_location("lab", ROOT / "lab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lab_names_the_python_it_needs():
    lab = load_lab_module()
    with pytest.raises(SystemExit) as stopped:
        lab.require_python((3, 10, 12), "/usr/bin/python3")
    assert stopped.value.code == (
        "[lab] Python 3.11 or newer is needed, and /usr/bin/python3 is "
        "Python 3.10.12. Install Python 3.11 (Debian or Ubuntu: sudo apt "
        "install python3.11 python3.11-venv), then run: python3.11 lab.py")
    lab.require_python((3, 12, 1))


def test_lab_explains_a_python_without_venv_support(tmp_path, monkeypatch):
    # A Python without ensurepip (Debian's python3.11 without
    # python3.11-venv) is not available here: its failure is simulated.
    lab = load_lab_module()
    monkeypatch.setattr(lab, "VENV", tmp_path / ".venv")

    def no_ensurepip(self, env_dir):
        raise subprocess.CalledProcessError(1, ["python", "-m", "ensurepip"])

    monkeypatch.setattr(lab.venv.EnvBuilder, "create", no_ensurepip)
    with pytest.raises(SystemExit) as stopped:
        lab.create_venv()
    message = stopped.value.code
    version = "{}.{}".format(*sys.version_info[:2])
    assert message.startswith(
        f"[lab] could not make a virtual environment with {sys.executable}")
    assert f"sudo apt install python{version}-venv" in message


class LabRun:
    """``python3 lab.py`` in a copy of the repository, read as it runs."""

    def __init__(self, copy, args, env):
        self.lines = []
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [base_python(), "lab.py", *args], cwd=copy, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if "?token=" in line and "/lab/tree/" in line \
                    and line.startswith("    "):
                self.ready.set()

    @property
    def output(self):
        return "\n".join(self.lines)

    def url(self):
        return next(line.strip() for line in self.lines
                    if line.startswith("    http://127.0.0.1:"))

    def wait_ready(self, timeout):
        began = time.monotonic()
        while not self.ready.wait(1):
            assert self.process.poll() is None, self.output[-3000:]
            assert time.monotonic() - began < timeout, self.output[-3000:]
        return time.monotonic() - began

    def ctrl_c(self):
        """What Ctrl-C in its terminal does: SIGINT to its process group."""
        os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(timeout=120)
        self.reader.join(timeout=10)
        return code

    def kill(self, state_dir, runtime_dir):
        """After a failure: end lab.py and whatever it left running."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for info in runtime_dir.glob("jpserver-*.json"):
            try:
                os.kill(json.loads(info.read_text())["pid"], signal.SIGTERM)
            except (OSError, ValueError, KeyError):
                pass
        embedded.stop(state_dir)


def base_python():
    """A Python 3.11 outside any venv, as on a fresh machine."""
    return getattr(sys, "_base_executable", None) or shutil.which("python3")


def copy_repository(target):
    shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", ".pytest_cache",
        ".ruff_cache", "test-artifacts", "ordered_key", "bench"))
    return target


def get(url, token):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        url, headers={"Authorization": f"token {token}"})
    with opener.open(request, timeout=30) as response:
        return response.status, response.read()


def start_kernel(base, token, path):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    body = json.dumps({"path": path, "type": "notebook",
                       "kernel": {"name": "python3"}}).encode()
    request = urllib.request.Request(
        f"{base}/api/sessions", data=body, method="POST",
        headers={"Authorization": f"token {token}",
                 "Content-Type": "application/json"})
    with opener.open(request, timeout=60) as response:
        return json.loads(response.read())["kernel"]["id"]


def pid_of_kernel(kernel_id):
    mark = f"kernel-{kernel_id}.json".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                pass
    return None


def gone(pid):
    """True when ``pid`` has ended (a zombie waiting to be reaped counts)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
    except OSError:
        return True
    return state.split()[0] == "Z"


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(check, timeout=30):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.slow
def test_lab_command_on_a_fresh_copy(tmp_path):
    copy = copy_repository(tmp_path / "barbican-lab")
    state_dir = tmp_path / "state"
    jupyter = tmp_path / "jupyter"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OS_", "BINDER_", "JUPYTER", "BARBICAN_"))
           and k not in ("VIRTUAL_ENV", "PYTHONPATH", "DISPLAY",
                         "WAYLAND_DISPLAY")}
    env.update(JUPYTER_CONFIG_DIR=str(jupyter / "config"),
               JUPYTER_DATA_DIR=str(jupyter / "data"),
               JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(jupyter / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(jupyter / "workspaces"),
               IPYTHONDIR=str(jupyter / "ipython"))
    port, lab_port = free_port(), free_port()
    args = ["--port", str(port), "--lab-port", str(lab_port),
            "--state-dir", str(state_dir)]

    # First run: no .venv yet, and no display, so no browser: the URL.
    run = LabRun(copy, args, env)
    try:
        install_and_start = run.wait_ready(timeout=1800)
        assert "[lab] creating a virtual environment" in run.output
        url = run.url()
        assert url.startswith(f"http://127.0.0.1:{lab_port}/lab/tree/"
                              f"{NOTEBOOK}?token=")
        token = url.split("?token=")[1]
        base = f"http://127.0.0.1:{lab_port}"
        status, page = get(url.split("?")[0], token)
        assert status == 200 and b"<html" in page.lower()
        status, body = get(f"{base}/api/contents/{NOTEBOOK}", token)
        notebook = json.loads(body)
        assert status == 200 and notebook["type"] == "notebook"
        assert "helpers.connect()" in json.dumps(notebook["content"])

        kernel = pid_of_kernel(start_kernel(base, token, NOTEBOOK))
        (server_info,) = (jupyter / "runtime").glob("jpserver-*.json")
        jupyterlab = json.loads(server_info.read_text())["pid"]
        barbican = embedded.status(state_dir).pid
        assert kernel and jupyterlab and barbican

        # What JupyterLab's terminals inherit: the exercise's commands
        # verbatim against this Barbican, with the lab's own openstack.
        environ = dict(
            item.split("=", 1) for item in Path(
                f"/proc/{jupyterlab}/environ").read_text().split("\0")
            if "=" in item)
        assert environ["OS_AUTH_TYPE"] == "none"
        assert environ["OS_ENDPOINT"] == f"http://127.0.0.1:{port}/v1"
        assert environ["PATH"].split(os.pathsep)[0] == str(
            copy / ".venv" / "bin")

        assert run.ctrl_c() == 0, run.output[-3000:]
    finally:
        run.kill(state_dir, jupyter / "runtime")
    assert wait_until(lambda: all(map(gone, (jupyterlab, kernel, barbican))))
    assert port_free(port) and port_free(lab_port)
    assert not embedded.status(state_dir).running
    assert (state_dir / "barbican.sqlite").exists(), "the keys must stay"
    assert "[lab] stopping the embedded Barbican (your keys stay)" in (
        run.output)

    # Second run: everything is installed; it starts in seconds.
    run = LabRun(copy, args + ["--no-browser"], env)
    try:
        restart = run.wait_ready(timeout=300)
        assert "installing" not in run.output
        barbican = embedded.status(state_dir).pid
        assert run.ctrl_c() == 0, run.output[-3000:]
    finally:
        run.kill(state_dir, jupyter / "runtime")
    assert wait_until(lambda: gone(barbican))
    print(f"first run (venv, install, start): {install_and_start:.0f} s; "
          f"second run: {restart:.1f} s")

    # JupyterLab's port taken: one line of advice, and nothing started.
    with socket.socket() as taken:
        # Its TIME_WAIT from the runs above must not stop this listener.
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", lab_port))
        taken.listen()
        refused = subprocess.run(
            [base_python(), "lab.py", *args], cwd=copy, env=env,
            capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"[lab] port {lab_port} on 127.0.0.1 is already in use")
    assert "python3 lab.py --lab-port " in refused.stderr
    assert not embedded.status(state_dir).running

    # Barbican's port taken: the helpers' reason, then how to move it.
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        refused = subprocess.run(
            [base_python(), "lab.py", *args], cwd=copy, env=env,
            capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in refused.stderr
    assert refused.stderr.endswith(
        "[lab] the embedded Barbican did not start; the error above says "
        "why. To give it another port: python3 lab.py --port N\n")
    assert "starting JupyterLab" not in refused.stdout
    assert "stopping" not in refused.stdout


def cloud_on_a_closed_port(monkeypatch, tmp_path, **binder):
    """An openrc whose Keystone port nobody listens on, as mybinder sees a
    lab cloud; and Binder's variables when given."""
    for key in list(os.environ):
        if key.startswith(("OS_", "BINDER_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("OS_AUTH_URL", f"http://127.0.0.1:{free_port()}/v3")
    monkeypatch.setenv("OS_USERNAME", "learner1")
    monkeypatch.setenv("OS_PASSWORD", "pw-never-shown")
    monkeypatch.setenv("OS_PROJECT_NAME", "lab")
    monkeypatch.setenv("OS_USER_DOMAIN_NAME", "Default")
    monkeypatch.setenv("OS_PROJECT_DOMAIN_NAME", "Default")
    for key, value in binder.items():
        monkeypatch.setenv(key, value)


def test_connect_on_binder_says_a_lab_cloud_is_out_of_reach(
        monkeypatch, tmp_path, caplog):
    cloud_on_a_closed_port(monkeypatch, tmp_path,
                           BINDER_LAUNCH_HOST="https://mybinder.org/",
                           BINDER_REPO_URL="https://github.com/o/r")
    with pytest.raises(helpers.ConnectError) as failed:
        helpers.connect()
    advice = ("This session runs on Binder, which lets it open outgoing "
              "connections on a few ports only: a lab cloud is usually "
              "unreachable from here. Unset OS_CLOUD and OS_AUTH_URL to use "
              "the embedded Barbican instead")
    assert failed.value.hint == (
        f"{advice} (in a notebook: %env OS_CLOUD= and %env OS_AUTH_URL=, "
        f"then connect again).")
    # Said before trying too: a blocked port may take minutes to fail.
    warnings = [r.getMessage() for r in caplog.records
                if r.levelname == "WARNING" and advice in r.getMessage()]
    assert len(warnings) == 1
    assert "pw-never-shown" not in str(failed.value) + caplog.text


def test_connect_elsewhere_does_not_mention_binder(monkeypatch, tmp_path,
                                                   caplog):
    cloud_on_a_closed_port(monkeypatch, tmp_path)
    with pytest.raises(helpers.ConnectError) as failed:
        helpers.connect()
    assert "Binder" not in str(failed.value) + caplog.text


BINDER_GUARANTEED_MIB = 1024


@pytest.mark.slow
def test_binder_session_fits_in_binder_memory(tmp_path):
    """binder/start wrapping JupyterLab, as on Binder; a kernel started by
    JupyterLab runs the whole notebook; then the three processes' memory
    is measured against mybinder's guaranteed 1 GB."""
    import psutil
    from jupyter_client import BlockingKernelClient

    root = tmp_path / "home"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / NOTEBOOK, root / NOTEBOOK)
    state_dir, lab_port, token = tmp_path / "state", free_port(), "t0k3n"
    jupyter = tmp_path / "jupyter"
    env = start_env(
        state_dir, free_port(), JUPYTER_TOKEN=token,
        JUPYTER_CONFIG_DIR=str(jupyter / "config"),
        JUPYTER_DATA_DIR=str(jupyter / "data"),
        JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(jupyter / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(jupyter / "workspaces"),
        IPYTHONDIR=str(jupyter / "ipython"))
    command = [str(START), "jupyter", "lab", "--no-browser",
               "--ip=127.0.0.1", f"--port={lab_port}", "--port-retries=0",
               f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    began = time.monotonic()
    lab = subprocess.Popen(command, cwd=root, env=env,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{lab_port}"
    client = None
    try:
        assert wait_until(lambda: lab.poll() is None and _answers(base),
                          timeout=180), "JupyterLab did not answer"
        launch = time.monotonic() - began
        kernel_id = start_kernel(base, token, NOTEBOOK)
        client = BlockingKernelClient(connection_file=str(
            jupyter / "runtime" / f"kernel-{kernel_id}.json"))
        client.load_connection_file()
        client.start_channels()
        client.wait_for_ready(timeout=120)
        notebook = json.loads((root / NOTEBOOK).read_text())
        for cell in notebook["cells"]:
            if cell["cell_type"] != "code":
                continue
            errors = []
            reply = client.execute_interactive(
                "".join(cell["source"]), timeout=180,
                output_hook=lambda msg: errors.append(msg["content"])
                if msg["msg_type"] == "error" else None)
            assert reply["content"]["status"] == "ok", errors
        # The kernel talked to the server the start script started.
        barbican = embedded.status(state_dir)
        assert barbican.running

        processes = {"JupyterLab": psutil.Process(lab.pid),
                     "kernel": psutil.Process(pid_of_kernel(kernel_id)),
                     "Barbican": psutil.Process(barbican.pid)}
        rss = {n: p.memory_info().rss >> 20 for n, p in processes.items()}
        pss = {n: p.memory_full_info().pss >> 20
               for n, p in processes.items()}
        print(f"launch to JupyterLab answering: {launch:.1f} s; "
              f"RSS MiB {rss} = {sum(rss.values())}; "
              f"PSS MiB {pss} = {sum(pss.values())}")
        assert sum(rss.values()) < BINDER_GUARANTEED_MIB
    finally:
        if client is not None:
            client.stop_channels()
        lab.terminate()
        try:
            lab.wait(timeout=30)
        except subprocess.TimeoutExpired:
            lab.kill()
        embedded.stop(state_dir)


def _answers(base):
    try:
        return get(f"{base}/api", "")[0] == 200
    except OSError:
        return False


def test_lab_passes_everything_after_test_to_pytest():
    spec = importlib.util.spec_from_file_location("lab", ROOT / "lab.py")
    lab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lab)
    assert lab.split_test_arguments(["test", "-q", "-m", "not browser"]) == (
        ["test"], ["-q", "-m", "not browser"])
    assert lab.split_test_arguments(
        ["--state-dir", "test", "test", "-x"]) == (
        ["--state-dir", "test", "test"], ["-x"])
    assert lab.split_test_arguments(["--port", "9312"]) == (
        ["--port", "9312"], [])


def test_lab_refuses_a_port_below_1024():
    refused = subprocess.run(
        [sys.executable, str(ROOT / "lab.py"), "--lab-port", "80"],
        capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "--lab-port 80 is not a TCP port; choose one from 1024 to 65535" \
        in refused.stderr
