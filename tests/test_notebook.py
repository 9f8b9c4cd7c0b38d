"""The exercise notebook and its panel, in a real kernel against the
session's real Barbican."""

import html
import os
import re
import shutil
import sqlite3
import stat

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT
from kernels import Kernel

NOTEBOOK = ROOT / "notebooks" / "01-order-an-aes-key.ipynb"


def kernel_env(server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["BARBICAN_LAB_STATE"] = str(server.state_dir)
    return env


@pytest.mark.parametrize(
    "path", sorted(NOTEBOOK.parent.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert "widgets" not in nb.metadata


def _texts(cell):
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            yield output.text
        elif "data" in output:
            yield output.data.get("text/html", "") + output.data.get(
                "text/plain", "")


def test_notebook_runs_top_to_bottom_in_a_fresh_kernel(server, tmp_path,
                                                        monkeypatch):
    work = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOK.parent, work)
    nb = nbformat.read(work / NOTEBOOK.name, as_version=4)
    for key, value in kernel_env(server).items():
        monkeypatch.setenv(key, value)
    for key in [k for k in os.environ if k.startswith("OS_")]:
        monkeypatch.delenv(key)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(work)}}).execute()

    errors = [o for c in nb.cells for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert errors == []
    out = "\n".join(t for c in nb.cells for t in _texts(c))
    assert f"embedded Barbican {server.version} at {server.endpoint}" in out
    assert "<td>ACTIVE</td>" in out
    assert f"{server.endpoint}/v1/secrets/" in out
    hexdump = next(t for c in nb.cells for t in _texts(c)
                   if t.startswith("00000000  "))
    lines = hexdump.splitlines()
    assert len(lines) == 3 and lines[2] == "00000020"
    assert "32 bytes = 256 bits" in out
    checks = next(c for c in nb.cells if "check_work" in c.source)
    assert [o.data["text/plain"] for o in checks.outputs]  # for the message
    plain = checks.outputs[0].data["text/plain"]
    assert "✘" not in plain and plain.count("✔") == 5, plain
    # The clean-up cell deleted what the notebook made, key file included.
    assert "deleted order" in out and "removed ordered_key" in out
    assert not (work / "ordered_key").exists()


PANEL_SETUP = """
import helpers
conn = helpers.connect()
panel = helpers.ExercisePanel(conn, key_file="ordered_key", timeout={timeout})
"""


@pytest.fixture
def kernel(server, tmp_path):
    k = Kernel(tmp_path, kernel_env(server))
    yield k
    k.shutdown()


def test_panel_click_path(kernel, tmp_path, conn):
    kernel.run(PANEL_SETUP.format(timeout=30))
    state = kernel.panel_state()
    assert state["status"] is None and "NO ORDER" in state["badge"]
    assert state["enabled"] == {
        "submit": True, "check": False, "wait": False, "stop": False,
        "fetch": False, "hexdump": False, "check_work": False,
        "clean_up": True}

    state = kernel.panel_state("panel.submit_button.click()")
    assert state["message"] == ""
    assert state["status"] == "ACTIVE" and ">ACTIVE<" in state["badge"]
    assert html.escape(
        'openstack secret order create key --name "Order for an AES key" '
        '--algorithm aes --bit-length 256 -c "Order href" -f value'
    ) in state["cli"]
    assert state["order_ref"] in state["order_view"]
    assert state["enabled"]["fetch"] and not state["enabled"]["hexdump"]

    state = kernel.panel_state("panel.wait_button.click(); panel.join(30)")
    assert state["status"] == "ACTIVE"
    assert state["secret_ref"] in state["message"]

    state = kernel.panel_state("panel.check_button.click()")
    assert f"openstack secret order get {state['order_ref']}" in (
        state["cli"])

    state = kernel.panel_state("panel.fetch_button.click()")
    assert "Saved 32 bytes (256 bits)" in state["message"]
    assert html.escape(
        f"openstack secret get --file ordered_key --payload_content_type "
        f"'application/octet-stream' {state['secret_ref']}") in state["cli"]
    assert state["secret_ref"] in state["secret_view"]
    assert state["enabled"]["hexdump"]
    key_file = tmp_path / "ordered_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    state = kernel.panel_state("panel.hexdump_button.click()")
    import helpers
    key = key_file.read_bytes()
    assert key == helpers.fetch_key(conn, state["order_ref"])
    assert html.escape(helpers.hexdump(key)) in state["hexdump_view"]
    assert "hexdump -C ordered_key" in state["cli"]

    state = kernel.panel_state("panel.check_work_button.click()")
    assert "All checks pass" in state["message"]
    assert state["checks_view"].count("✔") == 5

    order_ref, secret_ref = state["order_ref"], state["secret_ref"]
    state = kernel.panel_state("panel.clean_up_button.click()")
    assert f"deleted secret {secret_ref}" in state["message"]
    assert f"deleted order {order_ref}" in state["message"]
    assert not key_file.exists()
    with pytest.raises(helpers.NotFound):
        helpers.get_order(conn, order_ref)


def test_cleanup_deletes_exactly_what_the_notebook_created(kernel, conn,
                                                           tmp_path,
                                                           cleanup):
    import helpers
    outsider = helpers.order_key(conn)
    cleanup.append(outsider.order_ref)
    (tmp_path / "notes.txt").write_text("mine")
    kernel.run(PANEL_SETUP.format(timeout=30))
    state = kernel.panel_state("panel.submit_button.click(); "
                         "panel.fetch_button.click()")
    report = kernel.run(f"""
        for line in helpers.clean_up(conn, extra=[{outsider.order_ref!r},
                                                 "notes.txt"]):
            print(line)
    """)
    assert f"deleted order {state['order_ref']}" in report
    assert f"left order {outsider.order_ref}" in report
    assert "left file notes.txt" in report
    assert helpers.get_order(conn, outsider).status == "ACTIVE"
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "ordered_key").exists()


def test_panel_errors_show_in_the_panel(kernel, server, conn, cleanup):
    kernel.run(PANEL_SETUP.format(timeout=2))
    state = kernel.panel_state("panel.bit_length.value = '100'; "
                         "panel.submit_button.click()")
    assert "Provided field value is not supported" in state["message"]
    assert "What to do:" in state["message"]
    assert "Traceback" not in state["message"]
    assert state["status"] is None and not state["enabled"]["fetch"]

    state = kernel.panel_state("panel.algorithm.value = 'aes'; "
                         "panel.bit_length.value = '256'; "
                         "panel.algorithm.value = 'aes'; "
                         "panel.submit_button.click()")
    assert state["status"] == "ACTIVE"
    cleanup.append(state["order_ref"])
    # Keep the order PENDING in Barbican's own database: the synchronous
    # embedded server has no worker whose absence would do it for real.
    uuid = state["order_ref"].rsplit("/", 1)[1]
    with sqlite3.connect(server.state_dir / "barbican.sqlite") as db:
        db.execute("UPDATE orders SET status = 'PENDING' WHERE id = ?",
                   (uuid,))
    state = kernel.panel_state("panel.check_button.click()")
    assert state["status"] == "PENDING" and not state["enabled"]["fetch"]
    assert state["enabled"]["wait"]
    state = kernel.panel_state("panel.wait_button.click(); panel.join(30)")
    assert re.search(r"still PENDING after [23] s", state["message"])
    assert "worker" in state["message"]
    assert state["enabled"]["wait"] and not state["enabled"]["stop"]


def test_stop_waiting_and_a_stopped_server(tmp_path, conn):
    from helpers import embedded
    from conftest import free_port
    state_dir = tmp_path / "state"
    own = embedded.start(state_dir, free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["BARBICAN_LAB_STATE"] = str(state_dir)
    k = Kernel(tmp_path, env)
    try:
        k.run(PANEL_SETUP.format(timeout=60))
        state = k.panel_state("panel.submit_button.click()")
        uuid = state["order_ref"].rsplit("/", 1)[1]
        with sqlite3.connect(state_dir / "barbican.sqlite") as db:
            db.execute("UPDATE orders SET status = 'PENDING' WHERE id = ?",
                       (uuid,))
        state = k.panel_state("panel.check_button.click(); "
                        "panel.wait_button.click()")
        assert state["enabled"]["stop"] and not state["enabled"]["submit"]
        state = k.panel_state("panel.stop_button.click(); panel.join(10)")
        assert "Stopped waiting" in state["message"]
        assert not state["enabled"]["stop"]

        embedded.stop(state_dir)
        state = k.panel_state("panel.submit_button.click()")
        assert "nothing answers at Barbican" in state["message"]
        assert "python -m helpers server start" in state["message"]
        assert "Traceback" not in state["message"]
    finally:
        k.shutdown()
        embedded.stop(own.state_dir)


def test_lab_errors_in_cells_read_as_advice_not_tracebacks(kernel):
    outputs = []
    reply = kernel.client.execute_interactive(
        "import helpers\n"
        "helpers.order_key(helpers.connect(), bit_length='abc')",
        output_hook=lambda m: outputs.append(m), timeout=120)
    assert reply["content"]["status"] == "error"  # Run All stops here
    kinds = [m["msg_type"] for m in outputs]
    assert "error" not in kinds  # no traceback is sent at all
    shown = [m["content"]["data"]["text/html"] for m in outputs
             if m["msg_type"] == "display_data"]
    assert shown == [
        '<div class="lab-error" style="color:#c53030"><b>Error:</b> Bit '
        "length &#x27;abc&#x27; is not a whole number.<br><b>What to do:"
        "</b> For AES use 128, 192 or 256.</div>"]


def test_refused_order_clears_the_earlier_one_from_the_panel(kernel):
    kernel.run(PANEL_SETUP.format(timeout=30))
    state = kernel.panel_state("panel.submit_button.click()")
    assert state["status"] == "ACTIVE" and state["order_view"]
    state = kernel.panel_state("panel.bit_length.value = '100'; "
                         "panel.submit_button.click()")
    assert "not supported" in state["message"]
    assert state["status"] is None and "NO ORDER" in state["badge"]
    assert state["order_view"] == "" and not state["enabled"]["fetch"]
    kernel.run("helpers.clean_up(conn)")


def test_fetch_replaces_the_key_file_the_panel_saved_itself(kernel,
                                                            tmp_path):
    kernel.run(PANEL_SETUP.format(timeout=30))
    first = kernel.panel_state("panel.submit_button.click(); "
                         "panel.fetch_button.click()")
    key_file = tmp_path / "ordered_key"
    first_key = key_file.read_bytes()
    second = kernel.panel_state("panel.submit_button.click(); "
                          "panel.fetch_button.click()")
    assert "Saved 32 bytes" in second["message"]
    assert second["order_ref"] != first["order_ref"]
    assert key_file.read_bytes() != first_key

    key_file.write_bytes(b"the learner's own file")
    third = kernel.panel_state("panel.submit_button.click(); "
                         "panel.fetch_button.click()")
    assert "already exists and holds something else" in third["message"]
    assert key_file.read_bytes() == b"the learner's own file"
    kernel.run("helpers.clean_up(conn)")
    assert key_file.read_bytes() == b"the learner's own file"


def test_cli_text_quotes_what_the_learner_typed():
    from helpers.panel import order_command
    assert order_command("Order for an AES key", "aes", "256; rm -rf ~",
                         "cbc") == (
        'openstack secret order create key --name "Order for an AES key" '
        "--algorithm aes --bit-length '256; rm -rf ~' -c \"Order href\" "
        "-f value")


def test_steps_called_out_of_order_explain_themselves(kernel):
    kernel.run(PANEL_SETUP.format(timeout=30))
    # What a click on each button does, enabled or not.
    for step, words in [("wait", "There is no order yet."),
                        ("fetch", "There is no order yet."),
                        ("show_hexdump", "No key has been fetched yet.")]:
        state = kernel.panel_state(f"panel._run(panel.{step})")
        assert words in state["message"], state["message"]
        assert "unexpected" not in state["message"]
