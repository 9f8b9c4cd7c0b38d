"""Smoke test of the benchmark (``python -m bench``) with tiny counts.

The figures themselves are not asserted: shared machines are too noisy
for that.  What is checked is that one command measures every section
against its reference, prints the table with the machine, keeps every
key the load made, and leaves no server behind.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, require

SECTIONS = ["1 start-up", "2 round trip", "3 waiting", "4 classroom load",
            "5 memory", "6 notebook"]


def _processes_under(folder):
    """Pids whose command line mentions ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(folder).encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_bench_quick_run_measures_every_section_beside_its_reference(
        tmp_path):
    uwsgi = Path(sys.executable).with_name("uwsgi")
    require(uwsgi.exists(), "uWSGI (the benchmark's reference server)",
            "pip install -r requirements-test.txt")
    figures_file = tmp_path / "figures.json"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = str(ROOT)
    # The bench's state folders land under the test's own folder, so the
    # check below finds any server it failed to stop.
    env["TMPDIR"] = str(scratch)

    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json",
         str(figures_file)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
        check=False)

    assert run.returncode == 0, run.stderr[-3000:]
    assert _processes_under(scratch) == []
    data = json.loads(figures_file.read_text())
    figures = data["figures"]
    assert [s for s in SECTIONS if s in {f["section"] for f in figures}] \
        == SECTIONS
    for figure in figures:
        if figure["note"] == "notebook not found":
            continue
        assert figure["ours"] is not None, figure["name"]
        assert figure["reference"] is not None, figure["name"]
        assert figure["name"] in run.stdout
    lost = next(f for f in figures if f["name"].startswith("keys lost"))
    assert lost["name"] == "keys lost (of 6 fetched again)"
    assert lost["ours"] == 0
    assert f"machine: {os.cpu_count()} cores" in run.stdout
    assert "load average" in run.stdout
    assert data["machine"]["cores"] == os.cpu_count()


def test_bench_holds_orders_pending_with_the_paused_worker(tmp_path):
    from helpers import broker

    require(broker.installed(), "RabbitMQ (the asynchronous server's "
            "broker)", "apt-get install rabbitmq-server")
    figures_file = tmp_path / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = str(ROOT)
    env["TMPDIR"] = str(tmp_path)

    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "waiting",
         "--pending", "worker", "--json", str(figures_file)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
        check=False)

    assert run.returncode == 0, run.stderr[-3000:]
    assert _processes_under(tmp_path) == []
    figures = json.loads(figures_file.read_text())["figures"]
    held = next(f for f in figures if f["name"].startswith("requests while"))
    assert "pausing the worker" in held["note"]
    # The paused worker kept the orders PENDING for the whole hold: both
    # waiters read more than once, and both saw the order turn ACTIVE
    # once the worker resumed.
    assert held["ours"] > 1 and held["reference"] > 1
    noticed = next(f for f in figures if f["name"].startswith(
        "PENDING->ACTIVE noticed, median"))
    assert noticed["ours"] is not None and noticed["reference"] is not None
