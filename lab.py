#!/usr/bin/env python3
"""Open the barbican-lab, or run its tests, on a machine with only Python.

    python3 lab.py            # embedded Barbican + JupyterLab on the exercise
    python3 lab.py --async    # the same, Barbican with a queue and a worker
    python3 lab.py test       # the test suite

The first run makes a virtual environment in .venv and installs the pinned
requirements there; later runs reuse it and start in seconds.  Ctrl-C stops
JupyterLab and the embedded Barbican; the keys stay in the state folder.
Only the standard library is used here: nothing is installed yet.
"""

import argparse
import errno
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
NOTEBOOK = "notebooks/01-order-an-aes-key.ipynb"
MIN_PYTHON = (3, 11)
REQUIREMENTS = {"lab": ["requirements.txt"],
                "test": ["requirements.txt", "requirements-test.txt"]}
# An environment installed for the tests has everything the lab needs too.
ALSO_SATISFIES = {"lab": [], "test": ["lab"]}
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0


def say(text):
    print(f"[lab] {text}", flush=True)


def fail(text):
    """Leave with one line that says what went wrong and what to do."""
    sys.exit(f"[lab] {text}")


def venv_python():
    return VENV / ("Scripts" if os.name == "nt" else "bin") / "python"


def require_python(version=None, executable=None):
    """Stop with advice unless this Python can make the lab's venv.

    :param version: the version to judge; this interpreter's by default.
    :param executable: its path, for the message.
    """
    version = tuple(version or sys.version_info)[:3]
    if version[:2] >= MIN_PYTHON:
        return
    need = ".".join(map(str, MIN_PYTHON))
    have = ".".join(map(str, version))
    fail(f"Python {need} or newer is needed, and "
         f"{executable or sys.executable} is Python {have}. Install "
         f"Python {need} (Debian or Ubuntu: sudo apt install "
         f"python{need} python{need}-venv), then run: python{need} lab.py")


def venv_version():
    """The (major, minor) version of .venv's Python; None if it won't run."""
    python = venv_python()
    if not python.exists():
        return None
    try:
        result = subprocess.run(
            [str(python), "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    try:
        return tuple(int(n) for n in result.stdout.split())
    except ValueError:
        return None


def environment_digest(kind):
    """What an install of ``kind`` depends on: the pins and this folder.

    The folder is part of it because ``-e .`` records where the package
    lives: a moved checkout needs a fresh install.
    """
    files = REQUIREMENTS[kind] + ["pyproject.toml"]
    content = str(ROOT).encode() + b"".join(
        (ROOT / f).read_bytes() for f in files)
    return hashlib.sha256(content).hexdigest()


def _stamp(kind):
    return VENV / f".installed-{kind}"


def create_venv():
    """Make .venv with this Python, replacing a broken one."""
    require_python()
    version = ".".join(map(str, sys.version_info[:2]))
    say(f"creating a virtual environment in {VENV} (Python {version})")
    try:
        venv.EnvBuilder(with_pip=True, clear=VENV.exists()).create(VENV)
    except (subprocess.CalledProcessError, OSError) as exc:
        fail(f"could not make a virtual environment with {sys.executable} "
             f"({exc}). On Debian or Ubuntu the venv module is a separate "
             f"package: sudo apt install python{version}-venv; then run "
             f"this again.")


def ensure_environment(kind):
    """Create .venv and install what ``kind`` needs, unless already done."""
    digest = environment_digest(kind)
    version = venv_version()
    usable = version is not None and version >= MIN_PYTHON
    if usable and _stamp(kind).exists() \
            and _stamp(kind).read_text() == digest:
        return
    if not usable:
        if VENV.exists():
            say(".venv does not work (its Python is missing, broken or "
                "older than 3.11): making it again")
        create_venv()
    say("installing the pinned requirements into .venv (the first time "
        "takes a few minutes; pip speaks only if something goes wrong)")
    command = [str(venv_python()), "-m", "pip", "install", "-q",
               "--disable-pip-version-check"]
    for f in REQUIREMENTS[kind]:
        command += ["-r", str(ROOT / f)]
    command += ["-e", str(ROOT)]
    try:
        code = subprocess.call(command)
    except KeyboardInterrupt:
        fail("installation interrupted; run the same command again to "
             "finish it.")
    if code != 0:
        fail("pip could not install the requirements; its messages above "
             "say why. Fix that and run this again.")
    for done in [kind] + ALSO_SATISFIES[kind]:
        _stamp(done).write_text(environment_digest(done))


def helpers_command(*args, state_dir=None, quiet=False, shielded=False):
    """Run ``python -m helpers ARGS`` in .venv and return its exit code.

    :param quiet: hide its output.
    :param shielded: run it in a session of its own, out of reach of a
        Ctrl-C meant for lab.py (for the clean-up on the way out).
    """
    command = [str(venv_python()), "-m", "helpers"]
    if state_dir:
        command += ["--state-dir", state_dir]
    output = subprocess.DEVNULL if quiet else None
    return subprocess.call(command + list(args), cwd=ROOT, stdout=output,
                           stderr=output, start_new_session=shielded)


def port_in_use(port):
    """True when something listens on ``port`` of 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As JupyterLab will bind: a port in TIME_WAIT counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            fail(f"cannot use port {port} on 127.0.0.1 ({exc.strerror}); "
                 f"choose another with --lab-port, above 1024.")
    return False


def check_lab_port(port):
    """Stop with advice when JupyterLab's port is taken."""
    if not port_in_use(port):
        return
    spare = next((p for p in range(port + 1, min(port + 100, 65536))
                  if not port_in_use(p)), None)
    fail(f"port {port} on 127.0.0.1 is already in use (another JupyterLab, "
         f"or this lab still open in another terminal?). Stop that "
         f"program, or choose another port: python3 lab.py --lab-port "
         f"{spare or 'N'}")


def browser_available():
    """Whether JupyterLab can open a browser here (not over plain SSH)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def wait_until_ready(process, port, timeout=READY_TIMEOUT):
    """Wait until JupyterLab answers on ``port``; False if it never does."""
    # Straight to 127.0.0.1, whatever http_proxy says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with opener.open(f"http://127.0.0.1:{port}/api",
                             timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def stop_jupyterlab(process):
    """Stop JupyterLab, which shuts its kernels and terminals down first."""
    say("stopping JupyterLab and its kernels")
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        say(f"JupyterLab did not stop within {STOP_TIMEOUT:.0f} s; "
            f"killing it")
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (AttributeError, ProcessLookupError):
            process.kill()
        process.wait()


def embedded_endpoint(state_dir):
    """The running embedded Barbican's endpoint, or None."""
    command = [str(venv_python()), "-c",
               "import sys; from helpers import embedded; "
               "s = embedded.status(sys.argv[1] or None); "
               "print(s.endpoint if s.running else '')", state_dir or ""]
    try:
        out = subprocess.run(command, cwd=ROOT, capture_output=True,
                             text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out or None


def run_jupyterlab(args, state_dir):
    """Run JupyterLab on the exercise until it ends or Ctrl-C stops it."""
    env = dict(os.environ)
    if state_dir:
        env["BARBICAN_LAB_STATE"] = state_dir
    # JupyterLab's terminals: the lab's python and openstack first on PATH,
    # and, with no cloud configured, the exercise's commands aimed at the
    # embedded Barbican, as binder/start does.
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = os.pathsep.join([str(venv_python().parent),
                                   env.get("PATH", "")])
    if not (env.get("OS_CLOUD") or env.get("OS_AUTH_URL")):
        endpoint = embedded_endpoint(state_dir)
        if endpoint:
            env["OS_AUTH_TYPE"] = "none"
            env["OS_ENDPOINT"] = f"{endpoint}/v1"
    # The token travels in the environment, out of sight of ps.
    token = env.setdefault("JUPYTER_TOKEN", secrets.token_urlsafe(24))
    url = (f"http://127.0.0.1:{args.lab_port}/lab/tree/{NOTEBOOK}"
           f"?token={token}")
    # Given a notebook, JupyterLab serves the notebook's folder unless told
    # otherwise; the whole lab (README, terminal in the top folder) is
    # more useful, and the address above assumes it.
    lab = [str(venv_python()), "-m", "jupyter", "lab", NOTEBOOK,
           f"--ServerApp.root_dir={ROOT}", "--ip=127.0.0.1",
           f"--ServerApp.port={args.lab_port}", "--ServerApp.port_retries=0"]
    if args.no_browser or not browser_available():
        lab.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Containers often run as root; JupyterLab refuses that by default.
        lab.append("--allow-root")
    say("starting JupyterLab")
    # JupyterLab gets its own session and no terminal input, so one Ctrl-C
    # here stops it at once instead of asking "Shutdown this server?".
    process = subprocess.Popen(lab, cwd=ROOT, env=env,
                               stdin=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        if wait_until_ready(process, args.lab_port):
            say(f"JupyterLab is ready. If no browser opened, open this "
                f"address in one:\n\n    {url}\n")
            say("Ctrl-C here stops JupyterLab and the embedded Barbican; "
                "your keys stay.")
        code = process.wait()
    except KeyboardInterrupt:
        ignore_interruptions()
        stop_jupyterlab(process)
        return 0
    if code != 0:
        say(f"JupyterLab stopped with exit code {code}; its messages above "
            f"say why.")
    return code


PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                   "all_proxy", "ALL_PROXY")


def bypass_proxy_for_loopback(env):
    """Keep 127.0.0.1 away from any HTTP proxy the machine sets.

    Barbican and JupyterLab listen on this machine only; asked through a
    proxy, their health checks hang and the SDK and CLI fail.  ``env`` is
    changed in place; without a proxy it is left alone.
    """
    if not any(env.get(name) for name in PROXY_VARIABLES):
        return
    for name in ("no_proxy", "NO_PROXY"):
        hosts = [h.strip() for h in env.get(name, "").split(",") if h.strip()]
        hosts += [h for h in ("127.0.0.1", "localhost") if h not in hosts]
        env[name] = ",".join(hosts)


def open_lab(args):
    check_lab_port(args.lab_port)  # before minutes of installing, not after
    ensure_environment("lab")
    state_dir = (str(Path(args.state_dir).expanduser().resolve())
                 if args.state_dir else None)
    # Inherited by the helpers run below, JupyterLab, kernels and terminals.
    bypass_proxy_for_loopback(os.environ)
    # A server started earlier (from a terminal, say) is left running.
    already = helpers_command("server", "status", state_dir=state_dir,
                              quiet=True) == 0
    # A start that failed has cleaned up after itself; one cut short by
    # Ctrl-C may have left a server running, so that one is stopped.
    failed_to_start = False
    try:
        start = ["server", "start"] + (["--port", str(args.port)]
                                       if args.port else [])
        if args.asynchronous:
            start.append("--async")
            # Kernels that restart the server keep this mode too.
            os.environ["BARBICAN_LAB_MODE"] = "async"
        if helpers_command(*start, state_dir=state_dir) != 0:
            failed_to_start = True
            fail("the embedded Barbican did not start; the error above "
                 "says why. To give it another port: python3 lab.py "
                 "--port N")
        return run_jupyterlab(args, state_dir)
    finally:
        ignore_interruptions()
        if already:
            say("the embedded Barbican was running before; it keeps "
                "running (python -m helpers server stop stops it)")
        elif not failed_to_start:
            say("stopping the embedded Barbican (your keys stay)")
            helpers_command("server", "stop", state_dir=state_dir,
                            shielded=True)


def run_tests(args):
    ensure_environment("test")
    bypass_proxy_for_loopback(os.environ)
    return subprocess.call(
        [str(venv_python()), "-m", "pytest", "-ra"] + args.pytest_args,
        cwd=ROOT)


STOP_SIGNALS = [getattr(signal, name) for name in
                ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def ignore_interruptions():
    """Let the clean-up finish: a second Ctrl-C must not cut it short."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


def split_test_arguments(argv):
    """Split ``argv`` at the ``test`` command: lab.py's part, pytest's part.

    The word "test" given as an option's value (--state-dir test) is not
    the command.
    """
    takes_value = {"--port", "--lab-port", "--state-dir"}
    position = 0
    while position < len(argv):
        word = argv[position]
        if word == "test":
            return argv[:position + 1], argv[position + 1:]
        position += 2 if word in takes_value else 1
    return argv, []


def main():
    parser = argparse.ArgumentParser(
        description="Open barbican-lab in JupyterLab, or run its tests.")
    parser.add_argument("--port", type=int, default=None,
                        help="embedded Barbican's port (default: the one "
                             "it used last, or 9311)")
    parser.add_argument("--lab-port", type=int, default=8888,
                        help="JupyterLab's port (default 8888)")
    parser.add_argument("--state-dir", default=None,
                        help="embedded Barbican's state folder")
    parser.add_argument("--no-browser", action="store_true",
                        help="only print JupyterLab's URL")
    parser.add_argument("--async", dest="asynchronous", action="store_true",
                        help="run the embedded Barbican as production does: "
                             "API, message broker (RabbitMQ) and a worker; "
                             "orders start PENDING")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser(
        "test", help="run the test suite; what follows goes to pytest "
                     "(e.g. python3 lab.py test -q -m 'not browser')")
    # Whatever follows "test" is pytest's, options included: argparse's
    # REMAINDER would refuse one that comes first, such as -q.
    argv, pytest_args = split_test_arguments(sys.argv[1:])
    args = parser.parse_args(argv)
    args.pytest_args = pytest_args
    for name in ("port", "lab_port"):
        value = getattr(args, name)
        if value is not None and not 1024 <= value < 65536:
            parser.error(f"--{name.replace('_', '-')} {value} is not a TCP "
                         f"port; choose one from 1024 to 65535")
    # Closing the terminal or a kill stops everything, as Ctrl-C does.
    for number in STOP_SIGNALS:
        signal.signal(number, _interrupted)
    try:
        if args.command == "test":
            return run_tests(args)
        return open_lab(args)
    except KeyboardInterrupt:
        say("interrupted; run the same command again to start over.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
