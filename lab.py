#!/usr/bin/env python3
"""Open the barbican-lab, or run its tests, on a machine with only Python.

    python3 lab.py            # embedded Barbican + JupyterLab on the exercise
    python3 lab.py test       # the test suite

The first run makes a virtual environment in .venv and installs the pinned
requirements there; later runs reuse it and start in seconds.  Ctrl-C stops
JupyterLab and the embedded Barbican; the keys stay in the state folder.
Only the standard library is used here: nothing is installed yet.
"""

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
NOTEBOOK = "notebooks/01-order-an-aes-key.ipynb"
REQUIREMENTS = {"lab": ["requirements.txt"],
                "test": ["requirements.txt", "requirements-test.txt"]}


def say(text):
    print(f"[lab] {text}", flush=True)


def venv_python():
    return VENV / ("Scripts" if os.name == "nt" else "bin") / "python"


def ensure_environment(kind):
    """Create .venv and install what ``kind`` needs, unless already done."""
    files = REQUIREMENTS[kind] + ["pyproject.toml"]
    digest = hashlib.sha256(
        b"".join((ROOT / f).read_bytes() for f in files)).hexdigest()
    stamp = VENV / f".installed-{kind}"
    if stamp.exists() and stamp.read_text() == digest \
            and venv_python().exists():
        return
    if sys.version_info < (3, 11):
        sys.exit(f"[lab] Python 3.11 or newer is needed; this is "
                 f"{sys.version.split()[0]}. Run it with python3.11.")
    if not venv_python().exists():
        say(f"creating a virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    say("installing the pinned requirements (the first time takes a few "
        "minutes)")
    command = [str(venv_python()), "-m", "pip", "install", "-q",
               "--disable-pip-version-check"]
    for f in REQUIREMENTS[kind]:
        command += ["-r", str(ROOT / f)]
    command += ["-e", str(ROOT)]
    if subprocess.call(command) != 0:
        sys.exit("[lab] pip could not install the requirements; its "
                 "messages above say why. Fix that and run this again.")
    stamp.write_text(digest)


def helpers_command(*args, state_dir=None):
    command = [str(venv_python()), "-m", "helpers"]
    if state_dir:
        command += ["--state-dir", state_dir]
    return subprocess.call(command + list(args), cwd=ROOT)


def open_lab(args):
    ensure_environment("lab")
    start = ["server", "start"] + (["--port", str(args.port)]
                                   if args.port else [])
    if helpers_command(*start, state_dir=args.state_dir) != 0:
        sys.exit("[lab] the embedded Barbican did not start; the line above "
                 "says why.")
    env = dict(os.environ)
    if args.state_dir:
        env["BARBICAN_LAB_STATE"] = str(Path(args.state_dir).resolve())
    lab = [str(venv_python()), "-m", "jupyter", "lab", NOTEBOOK,
           "--ip=127.0.0.1", f"--ServerApp.port={args.lab_port}"]
    if args.no_browser:
        lab.append("--no-browser")
    say("starting JupyterLab; open the URL it prints if no browser opens. "
        "Ctrl-C stops everything.")
    # JupyterLab gets its own session and no terminal input, so one Ctrl-C
    # here stops it at once instead of asking "Shutdown this server?".
    process = subprocess.Popen(lab, cwd=ROOT, env=env,
                               stdin=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        say("stopping JupyterLab")
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    finally:
        say("stopping the embedded Barbican (your keys stay)")
        helpers_command("server", "stop", state_dir=args.state_dir)
    return 0 if code in (0, -signal.SIGTERM) else code


def run_tests(args):
    ensure_environment("test")
    return subprocess.call(
        [str(venv_python()), "-m", "pytest", "-ra"] + args.pytest_args,
        cwd=ROOT)


def main():
    parser = argparse.ArgumentParser(
        description="Open barbican-lab in JupyterLab, or run its tests.")
    parser.add_argument("--port", type=int, default=None,
                        help="embedded Barbican's port (default 9311)")
    parser.add_argument("--lab-port", type=int, default=8888,
                        help="JupyterLab's port (default 8888)")
    parser.add_argument("--state-dir", default=None,
                        help="embedded Barbican's state folder")
    parser.add_argument("--no-browser", action="store_true",
                        help="only print JupyterLab's URL")
    commands = parser.add_subparsers(dest="command")
    test = commands.add_parser("test", help="run the test suite")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER,
                      help="passed on to pytest")
    args = parser.parse_args()
    if args.command == "test":
        return run_tests(args)
    return open_lab(args)


if __name__ == "__main__":
    sys.exit(main())
