"""The classroom path: the lab against a Keystone-backed Barbican.

``tests/testcloud.py`` builds a real Keystone and a real Barbican (stock
``authtoken`` + ``context`` pipeline) twice per session, over HTTP and over
HTTPS with a private CA, both at once.  The product sees an ordinary cloud:
an openrc's ``OS_*`` variables, or a ``clouds.yaml`` entry chosen with
``OS_CLOUD``.  Nothing here is mocked.
"""

import html
import importlib.util
import logging
import os
import re
import shutil
import ssl
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import helpers
import testcloud
from helpers import embedded
from conftest import ROOT, require
from kernels import Kernel

pytestmark = pytest.mark.cloud

NOTEBOOK = ROOT / "notebooks" / "01-order-an-aes-key.ipynb"
FORMS = ("openrc", "clouds.yaml")
# Fernet tokens are url-safe base64 starting with the version byte 0x80.
TOKEN = re.compile(r"gAAAAA[A-Za-z0-9_=-]{40,}")

# The exercise's commands, as the README prints them.
CREATE = ('openstack secret order create key --name "Order for an AES key" '
          '--algorithm aes --bit-length 256 -c "Order href" -f value')
GET = "openstack secret order get $ORDER_REF"
FETCH = ("openstack secret get --file ordered_key --payload_content_type "
         "'application/octet-stream' $SECRET_REF")


# ---- the cloud and the learner's environment ------------------------------

@pytest.fixture(scope="session")
def clouds(tmp_path_factory):
    """Both test clouds, started at once: ``{"http": ..., "tls": ...}``."""
    how = "pip install -r requirements-test.txt"
    require(importlib.util.find_spec("keystone"), "keystone", how)
    require(importlib.util.find_spec("gunicorn"), "gunicorn", how)
    base = tmp_path_factory.mktemp("testcloud")
    started = time.monotonic()
    http, tls = testcloud.start_clouds([(base / "http", False),
                                       (base / "tls", True)])
    wall = time.monotonic() - started
    for cloud in (http, tls):
        cloud.write_clouds_yaml()
    logging.getLogger(__name__).warning(
        "test clouds up in %.1f s; HTTP %s; TLS %s", wall, http.timings,
        tls.timings)
    yield {"http": http, "tls": tls, "wall": wall}
    testcloud.stop_clouds([http, tls])


@pytest.fixture(params=["http", "tls"])
def cloud(request, clouds):
    return clouds[request.param]


def variables(cloud, form="openrc", user="learner1", **changes):
    """The ``OS_*`` variables a learner has: an openrc, or OS_CLOUD."""
    if form == "openrc":
        found = cloud.openrc(user)
    else:
        found = {"OS_CLIENT_CONFIG_FILE": str(cloud.folder / "clouds.yaml"),
                 "OS_CLOUD": f"lab-{user}"}
    found.update(changes)
    return {k: v for k, v in found.items() if v is not None}


@pytest.fixture
def learner(monkeypatch, tmp_path):
    """Set this process's environment to a learner's; returns a setter.

    ``BARBICAN_LAB_STATE`` points at a folder that must stay empty: the
    embedded server is never the answer when a cloud is configured.
    """
    state = tmp_path / "embedded-state"

    def become(found):
        for key in [k for k in os.environ if k.startswith("OS_")]:
            monkeypatch.delenv(key)
        for key, value in found.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("BARBICAN_LAB_STATE", str(state))

    yield become
    if state.exists():
        embedded.stop(state)  # not left running, whatever happens below
    assert not state.exists(), "the embedded server was started"


def child_env(tmp_path, found):
    """A shell's environment with only the learner's OS_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(found)
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env["BARBICAN_LAB_STATE"] = str(tmp_path / "embedded-state")
    return env


def run_check(tmp_path, found, *extra):
    """``python -m helpers [extra] check --file ordered_key``."""
    result = subprocess.run(
        [sys.executable, "-m", "helpers", *extra, "check", "--file",
         "ordered_key"], check=False, env=child_env(tmp_path, found),
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert not (tmp_path / "embedded-state").exists()
    return result


def shell(command, env, cwd):
    return subprocess.run(["bash", "-c", command], check=False, env=env,
                          cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def describe_line(cloud, form, user="learner1"):
    account = cloud.accounts[user]
    label = ("the cloud in your OS_* variables" if form == "openrc"
             else f"cloud 'lab-{user}'")
    return (f"{label} (Keystone {cloud.auth_url}, RegionOne, user "
            f"{user!r} in project {account.project!r})")


def assert_no_secrets(cloud, *texts):
    for text in texts:
        for password in cloud.passwords:
            assert password not in text
        assert not TOKEN.search(text), TOKEN.search(text).group(0)[:12]


def hexdump_lines(text):
    lines = [line for line in text.splitlines()
             if re.match(r"^[0-9a-f]{8}", line)]
    assert len(lines) == 3 and lines[2] == "00000020", lines
    return lines


# ---- the cloud itself -------------------------------------------------------

def test_clouds_start_well_under_a_minute(clouds, record_property):
    record_property("start_seconds", round(clouds["wall"], 1))
    # About 15 s on two idle cores; other work on the machine can triple
    # it, so only a minute fails.
    assert clouds["wall"] < 60


def test_barbican_sits_behind_keystone(cloud):
    """authtoken first: no token, no answer, and Keystone named."""
    context = (ssl.create_default_context(cafile=str(cloud.ca_file))
               if cloud.tls else None)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{cloud.barbican_url}/v1/secrets",
                               timeout=10, context=context)
    assert caught.value.code == 401
    assert cloud.keystone_url in caught.value.headers["WWW-Authenticate"]

    admin = cloud.admin_connection()
    try:
        service = admin.identity.find_service("barbican")
        endpoints = list(admin.identity.endpoints(service_id=service.id))
        assert sorted((e.interface, e.region_id, e.url) for e in endpoints) \
            == [(i, "RegionOne", cloud.barbican_url)
                for i in ("admin", "internal", "public")]
        roles = {r.id: r.name for r in admin.identity.roles()}
        users = {u.id: u.name for u in admin.identity.users()}
        granted = {(users[a.user["id"]], roles[a.role["id"]])
                   for a in admin.identity.role_assignments()
                   if a.user and a.user["id"] in users}
        assert {("learner1", "member"), ("learner2", "member"),
                ("observer", "reader"), ("barbican", "service")} <= granted
        assert ("observer", "member") not in granted
    finally:
        admin.close()


# ---- the product against it, unchanged --------------------------------------

@pytest.mark.parametrize("form", FORMS)
def test_connect_chooses_the_cloud_and_runs_the_exercise(cloud, form,
                                                         learner):
    learner(variables(cloud, form))
    conn = helpers.connect()
    assert helpers.describe(conn) == describe_line(cloud, form)
    assert conn.key_manager.get_endpoint() == f"{cloud.barbican_url}/v1/"

    order = helpers.order_key(conn)
    assert order.order_ref.startswith(f"{cloud.barbican_url}/v1/orders/")
    order = helpers.wait_for_order(conn, order, timeout=30)
    assert order.status == "ACTIVE"
    key = helpers.fetch_key(conn, order)
    assert len(key) == 32
    hexdump_lines(helpers.hexdump(key))


@pytest.mark.parametrize("form", FORMS)
def test_check_command(cloud, form, tmp_path):
    result = run_check(tmp_path, variables(cloud, form))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0] == f"Barbican: {describe_line(cloud, form)}"
    assert re.search(r"Status +ACTIVE", out)
    assert "Key: 32 bytes (256 bits)" in out
    hexdump_lines(out)
    key_file = tmp_path / "ordered_key"
    assert len(key_file.read_bytes()) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert_no_secrets(cloud, out, result.stderr)


@pytest.mark.parametrize("kind,form", [("http", "openrc"),
                                       ("tls", "clouds.yaml")])
def test_cli_commands_verbatim_fetch_the_same_bytes(clouds, kind, form,
                                                    tmp_path, learner):
    cloud = clouds[kind]
    readme = (ROOT / "README.md").read_text()
    for command in (CREATE, GET, FETCH, "hexdump -C ordered_key"):
        assert command in readme
    require(shutil.which("openstack", path=child_env(tmp_path, {})["PATH"]),
            "the openstack CLI", "pip install -r requirements.txt")
    require(shutil.which("hexdump"), "hexdump", "apt-get install "
            "bsdextrautils")
    env = child_env(tmp_path, variables(cloud, form))

    created = shell(CREATE, env, tmp_path)
    assert created.returncode == 0, created.stderr
    order_ref = created.stdout.strip()
    assert order_ref.startswith(f"{cloud.barbican_url}/v1/orders/")
    env["ORDER_REF"] = order_ref
    shown = shell(GET, env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "| Status         | ACTIVE" in shown.stdout
    secret_ref = re.search(r"\| Secret href +\| (\S+)", shown.stdout)[1]
    env["SECRET_REF"] = secret_ref
    fetched = shell(FETCH, env, tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    dumped = shell("hexdump -C ordered_key", env, tmp_path)
    assert dumped.returncode == 0, dumped.stderr

    learner(variables(cloud, form))
    key = helpers.fetch_key(helpers.connect(), order_ref)
    assert (tmp_path / "ordered_key").read_bytes() == key
    assert dumped.stdout == helpers.hexdump(key)


def run_notebook(work, found):
    """Execute the exercise notebook headless; stop at the first error.

    :returns: the executed notebook and the error (or ``None``).
    """
    shutil.copytree(NOTEBOOK.parent, work)
    nb = nbformat.read(work / NOTEBOOK.name, as_version=4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(found)
    env["BARBICAN_LAB_STATE"] = str(work / "embedded-state")
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}})
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        return nb, exc
    finally:
        assert not (work / "embedded-state").exists()
    return nb, None


def outputs_text(nb):
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                texts.append(output.text)
            elif "data" in output:
                texts.append(output.data.get("text/html", "")
                             + output.data.get("text/plain", ""))
    return "\n".join(texts)


@pytest.mark.parametrize("kind,form", [("http", "openrc"),
                                       ("tls", "clouds.yaml")])
def test_notebook_runs_headless_against_the_cloud(clouds, kind, form,
                                                  tmp_path):
    cloud = clouds[kind]
    nb, error = run_notebook(tmp_path / "notebooks", variables(cloud, form))
    assert error is None, str(error)[-2000:]
    out = outputs_text(nb)
    assert f"Talking to {describe_line(cloud, form)}" in out
    assert "<td>ACTIVE</td>" in out
    assert f"{cloud.barbican_url}/v1/secrets/" in out
    hexdump = next(t for c in nb.cells for o in c.get("outputs", [])
                   if o.output_type == "stream"
                   for t in [o.text] if t.startswith("00000000  "))
    hexdump_lines(hexdump)
    assert "32 bytes = 256 bits" in out
    assert "deleted order" in out and "removed ordered_key" in out
    stderr = [o.text for c in nb.cells for o in c.get("outputs", [])
              if o.output_type == "stream" and o.name == "stderr"]
    assert stderr == []
    assert_no_secrets(cloud, out)


@pytest.fixture
def kernel(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["BARBICAN_LAB_STATE"] = str(tmp_path / "embedded-state")
    k = Kernel(tmp_path, env)
    k.run("import json, os, openstack, helpers")
    yield k
    k.shutdown()
    assert not (tmp_path / "embedded-state").exists()


def panel_setup(found, connect="helpers.connect()"):
    """Kernel code: become the learner ``found``, connect, build a panel."""
    return f"""
        for key in [k for k in os.environ if k.startswith("OS_")]:
            del os.environ[key]
        os.environ.update({found!r})
        conn = {connect}
        panel = helpers.ExercisePanel(conn, key_file="ordered_key")
    """


def test_panel_click_path_against_the_cloud(clouds, kernel, tmp_path,
                                            learner):
    cloud = clouds["tls"]
    found = variables(cloud, "openrc", user="learner2")
    kernel.run(panel_setup(found))
    state = kernel.panel_state("panel.submit_button.click()")
    assert state["message"] == "" and state["status"] == "ACTIVE"
    assert state["order_ref"].startswith(f"{cloud.barbican_url}/v1/orders/")
    state = kernel.panel_state("panel.wait_button.click(); panel.join(30)")
    assert state["status"] == "ACTIVE"
    state = kernel.panel_state("panel.fetch_button.click()")
    assert "Saved 32 bytes (256 bits)" in state["message"]
    key_file = tmp_path / "ordered_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    state = kernel.panel_state("panel.hexdump_button.click()")
    key = key_file.read_bytes()
    assert html.escape(helpers.hexdump(key)) in state["hexdump_view"]

    learner(found)
    assert key == helpers.fetch_key(helpers.connect(), state["order_ref"])


# ---- TLS --------------------------------------------------------------------

def untrusted_message(cloud, where):
    return (
        f"Could not connect to Barbican: this machine does not trust the "
        f"TLS certificate of Keystone at {cloud.keystone_url} (unable to "
        f"get local issuer certificate). Point {where} at the lab's CA "
        f"bundle (the .pem file from your instructor); do not switch TLS "
        f"verification off.")


@pytest.mark.parametrize("form", FORMS)
def test_untrusted_certificate_gives_one_message(clouds, form, learner,
                                                 tmp_path):
    cloud = clouds["tls"]
    if form == "openrc":
        found = variables(cloud, form, OS_CACERT=None)
        where = "OS_CACERT in your openrc"
    else:
        found = variables(cloud, form, user="learner1-nocacert")
        where = "cacert in the clouds.yaml entry 'lab-learner1-nocacert'"

    learner(found)
    with pytest.raises(helpers.ConnectError) as caught:
        helpers.connect()  # never a fallback: not unverified, not embedded
    assert str(caught.value) == untrusted_message(cloud, where)

    result = run_check(tmp_path, found)
    assert result.returncode == 1
    assert result.stderr == f"error: {untrusted_message(cloud, where)}\n"
    assert result.stdout == ""


def test_missing_ca_bundle_file(clouds, learner, tmp_path):
    missing = tmp_path / "lab-ca.pem"
    found = variables(clouds["tls"], OS_CACERT=str(missing))
    expected = (
        f"Could not connect to Barbican: the CA bundle file {missing} does "
        f"not exist. Point OS_CACERT in your openrc at the lab's CA bundle "
        f"(the .pem file from your instructor), with its full path.")
    learner(found)
    with pytest.raises(helpers.ConnectError) as caught:
        helpers.connect()
    assert str(caught.value) == expected
    result = run_check(tmp_path, found)
    assert result.stderr == f"error: {expected}\n"


def test_insecure_switch_warns_every_time(clouds, learner, caplog,
                                         tmp_path):
    cloud = clouds["tls"]
    found = variables(cloud, "openrc", OS_CACERT=None, OS_INSECURE="true")
    learner(found)
    warning = ("TLS verification is OFF for the cloud in your OS_* "
               "variables: anyone on the network path could read your "
               "keys. Remove the insecure setting and point OS_CACERT (or "
               "cacert:) at the lab's CA bundle.")
    with caplog.at_level(logging.WARNING, logger="helpers"):
        for _ in range(2):
            conn = helpers.connect()
            assert helpers.describe(conn).endswith(
                " with TLS verification OFF")
    assert [r.getMessage() for r in caplog.records
            if r.name == "helpers.connection"] == [warning, warning]

    result = run_check(tmp_path, found)
    assert result.returncode == 0, result.stderr
    assert f"WARNING helpers.connection: {warning}" in result.stderr


# ---- what learners get wrong ------------------------------------------------

@dataclass
class Mistake:
    """A learner's mistake and the one line it must give.

    ``at_connect`` is what :func:`helpers.connect`, ``python -m helpers
    check`` and the notebook's connect cell say.  ``at_click`` is what the
    panel says when the same failure meets a click, on a connection that
    has not logged in yet (as after its token expired).
    """

    cloud: testcloud.TestCloud
    found: dict
    at_connect: str
    at_click: str


def mistakes(clouds):
    """The mistakes of the issue, by name (the down servers come later)."""
    http, tls = clouds["http"], clouds["tls"]
    as_http = tls.auth_url.replace("https://", "http://")
    http_base = tls.keystone_url.replace("https://", "http://")
    return {
        "wrong password": Mistake(
            http, variables(http, OS_PASSWORD="not-the-password"),
            at_connect=(
                "Could not connect to Barbican: Keystone refused the login "
                "of user 'learner1' in project 'lab1' (HTTP 401): the user "
                "name, password or project is wrong. Check OS_USERNAME, "
                "OS_PASSWORD and OS_PROJECT_NAME in your openrc; if they "
                "are right, ask your instructor to reset your password."),
            at_click=(
                "Could not order a key: Keystone refused the login (HTTP "
                "401): the user name, password or project is wrong. Check "
                "OS_USERNAME, OS_PASSWORD and OS_PROJECT_NAME in your "
                "openrc (username, password and project_name in "
                "clouds.yaml); if they are right, ask your instructor to "
                "reset your password.")),
        "reader only": Mistake(
            http, variables(http, user="observer"),
            at_connect=(
                "Could not connect to Barbican: the role of user 'observer' "
                "in project 'lab3' does not allow it (HTTP 403: Order(s) "
                "retrieval attempt not allowed - please review your "
                "user/project privileges). The exercise needs the 'member' "
                "role on your project; ask your instructor to grant it."),
            at_click=(
                "Could not order a key: your role does not allow it (HTTP "
                "403: Order creation attempt not allowed - please review "
                "your user/project privileges). The exercise needs the "
                "'member' role on your project; ask your instructor to "
                "grant it.")),
        "region without Barbican": Mistake(
            http, variables(http, OS_REGION_NAME="RegionTwo"),
            at_connect=(
                "Could not connect to Barbican: the cloud's catalog has no "
                "key-manager (Barbican) endpoint in region 'RegionTwo'. Set "
                "OS_REGION_NAME in your openrc to the region your "
                "instructor gave you. Regions with Barbican on this cloud: "
                "RegionOne."),
            at_click=(
                "Could not order a key: the cloud's catalog has no "
                "key-manager (Barbican) endpoint in region 'RegionTwo'. Set "
                "OS_REGION_NAME in your openrc (region_name in clouds.yaml) "
                "to the region your instructor gave you.")),
        "http against https": Mistake(
            tls, variables(tls, OS_AUTH_URL=as_http, OS_CACERT=None),
            at_connect=(
                f"Could not connect to Barbican: Keystone at {http_base} "
                f"closed the connection without answering: it serves "
                f"HTTPS. Make OS_AUTH_URL in your openrc start with "
                f"https://, and point OS_CACERT at the lab's CA bundle."),
            at_click=(
                f"Could not order a key: Keystone at {http_base} closed the "
                f"connection without answering: it serves HTTPS. Make "
                f"OS_AUTH_URL in your openrc (auth_url in clouds.yaml) "
                f"start with https://, and point OS_CACERT (cacert) at the "
                f"lab's CA bundle.")),
    }


def keystone_down(cloud):
    """What a learner reads while Keystone is down: (connect, click)."""
    at_connect = (
        f"Could not connect to Barbican: nothing answers at "
        f"{cloud.keystone_url}, the cloud's Keystone (where you log in). "
        f"Check OS_AUTH_URL in your openrc against what your instructor "
        f"gave you; if it is right, Keystone is down: tell your "
        f"instructor.")
    at_click = (
        f"Could not order a key: nothing answers at {cloud.keystone_url}, "
        f"the cloud's Keystone (where you log in). Check OS_AUTH_URL in "
        f"your openrc (auth_url in clouds.yaml) against what your "
        f"instructor gave you; if it is right, Keystone is down: tell your "
        f"instructor.")
    return at_connect, at_click


def barbican_down(cloud, action):
    return (f"Could not {action}: Keystone accepted your login, but nothing "
            f"answers at the cloud's Barbican, {cloud.barbican_url}. Your "
            f"settings are right, but Barbican is down: tell your "
            f"instructor, then try again.")


def panel_error(message_and_hint, state):
    """The panel shows the message, then the hint, each escaped."""
    text = state["message"]
    shown = re.sub(r"<[^>]+>", "\n", text)
    lines = [html.unescape(s).strip() for s in shown.split("\n")
             if s.strip()]
    assert lines[0] == "Error:" and lines[2] == "What to do:", lines
    assert f"{lines[1]} {lines[3]}" == message_and_hint
    return lines


def notebook_error(nb, error, expected):
    """The connect cell shows the message as advice, nothing else."""
    assert error is not None
    cell = next(c for c in nb.cells if "helpers.connect()" in c.source)
    shown = [o for o in cell.outputs if o.output_type == "display_data"]
    assert len(shown) == 1
    text = re.sub(r"<[^>]+>", "\n", shown[0].data["text/html"])
    lines = [html.unescape(s).strip() for s in text.split("\n")
             if s.strip()]
    assert lines[0] == "Error:" and lines[2] == "What to do:", lines
    assert f"{lines[1]} {lines[3]}" == expected
    assert [o for o in cell.outputs if o.output_type == "stream"] == []
    tracebacks = [o.traceback for o in cell.outputs
                  if o.output_type == "error"]
    assert tracebacks in ([], [[]])


def test_each_mistake_gives_one_clear_line(clouds, learner, tmp_path,
                                           kernel):
    for name, mistake in mistakes(clouds).items():
        cloud, found = mistake.cloud, mistake.found
        at_connect, at_click = mistake.at_connect, mistake.at_click
        learner(found)
        with pytest.raises(helpers.LabError) as caught:
            helpers.connect()
        assert str(caught.value) == at_connect, name

        work = tmp_path / name.replace(" ", "-")
        work.mkdir()
        result = run_check(work, found)
        assert (result.returncode, result.stdout) == (1, ""), name
        assert result.stderr == f"error: {at_connect}\n", name
        assert_no_secrets(cloud, result.stderr)

        nb, error = run_notebook(work / "notebooks", found)
        notebook_error(nb, error, at_connect)

        kernel.run(panel_setup(found, "openstack.connect()"))
        state = kernel.panel_state("panel.submit_button.click()")
        panel_error(at_click, state)
        assert state["status"] is None and not state["enabled"]["fetch"]


def test_keystone_down(clouds, learner, tmp_path, kernel):
    cloud = clouds["http"]
    found = variables(cloud)
    at_connect, at_click = keystone_down(cloud)
    with cloud.stopped("keystone"):
        learner(found)
        with pytest.raises(helpers.ConnectError) as caught:
            helpers.connect()
        assert str(caught.value) == at_connect
        result = run_check(tmp_path, found)
        assert result.stderr == f"error: {at_connect}\n"
        nb, error = run_notebook(tmp_path / "notebooks", found)
        notebook_error(nb, error, at_connect)
        kernel.run(panel_setup(found, "openstack.connect()"))
        panel_error(at_click,
                    kernel.panel_state("panel.submit_button.click()"))


def test_barbican_down_while_keystone_is_up(clouds, learner, tmp_path,
                                            kernel):
    cloud = clouds["http"]
    found = variables(cloud)
    # A learner who connected before Barbican went down.
    kernel.run(panel_setup(found))
    with cloud.stopped("barbican"):
        learner(found)
        with pytest.raises(helpers.ConnectError) as caught:
            helpers.connect()
        expected = barbican_down(cloud, "connect to Barbican")
        assert str(caught.value) == expected
        result = run_check(tmp_path, found)
        assert result.stderr == f"error: {expected}\n"
        nb, error = run_notebook(tmp_path / "notebooks", found)
        notebook_error(nb, error, expected)
        state = kernel.panel_state("panel.submit_button.click()")
        panel_error(barbican_down(cloud, "order a key"), state)
    # Back up: the same panel works again.
    state = kernel.panel_state("panel.submit_button.click()")
    assert state["status"] == "ACTIVE" and state["message"] == ""


def test_no_password_or_token_in_any_output(clouds, learner, caplog,
                                            tmp_path):
    cloud = clouds["tls"]
    result = run_check(tmp_path, variables(cloud), "--debug")
    assert result.returncode == 0, result.stderr
    assert "keystoneauth" in result.stderr  # debug logging was on
    assert_no_secrets(cloud, result.stdout, result.stderr)
    wrong = run_check(tmp_path, variables(cloud, OS_PASSWORD="x" * 12),
                      "--debug")
    assert wrong.returncode == 1
    assert_no_secrets(cloud, wrong.stdout, wrong.stderr)

    learner(variables(cloud))
    with caplog.at_level(logging.DEBUG):
        conn = helpers.connect()
        order = helpers.wait_for_order(conn, helpers.order_key(conn))
        helpers.fetch_key(conn, order)
    token = conn.auth_token
    assert token and token not in caplog.text
    assert token not in helpers.describe(conn)
    assert_no_secrets(cloud, caplog.text, helpers.describe(conn))


# ---- two learners, one cloud ----------------------------------------------

def test_two_learners_at_once_see_only_their_own(clouds, learner):
    cloud = clouds["http"]
    learner(variables(cloud, user="learner1"))
    first = helpers.connect()
    learner(variables(cloud, user="learner2"))
    second = helpers.connect()
    made = {"learner1": [], "learner2": []}
    failures = []

    def exercise(name, conn):
        try:
            for _ in range(3):
                order = helpers.wait_for_order(conn, helpers.order_key(conn))
                assert len(helpers.fetch_key(conn, order)) == 32
                made[name].append((order.order_ref, order.secret_ref))
        except Exception as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=exercise, args=("learner1", first)),
               threading.Thread(target=exercise, args=("learner2", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []

    for conn, own, other in ((first, "learner1", "learner2"),
                             (second, "learner2", "learner1")):
        orders = {o.order_ref for o in conn.key_manager.orders()}
        secrets = {s.secret_ref for s in conn.key_manager.secrets()}
        assert {o for o, _ in made[own]} <= orders
        assert {s for _, s in made[own]} <= secrets
        assert not orders & {o for o, _ in made[other]}
        assert not secrets & {s for _, s in made[other]}

    other_order, other_secret = made["learner1"][0]
    with pytest.raises(helpers.NotFound) as caught:
        helpers.get_order(second, other_order)
    assert str(caught.value) == (
        "Could not read the order: Barbican knows no such object (HTTP "
        "404). Check the href; it may belong to another project or have "
        "been deleted.")
    # Barbican itself refuses the other project's secret and its payload.
    for path in ("", "/payload"):
        response = second.session.get(
            other_secret + path, raise_exc=False,
            headers={"Accept": "application/octet-stream"})
        assert response.status_code == 403


def test_fetching_the_other_learners_secret_is_refused(clouds, learner):
    cloud = clouds["http"]
    learner(variables(cloud, user="learner1"))
    first = helpers.connect()
    order = helpers.wait_for_order(first, helpers.order_key(first))
    learner(variables(cloud, user="learner2"))
    second = helpers.connect()
    with pytest.raises(helpers.AuthError) as caught:
        helpers.get_payload(second, order.secret_ref)
    assert str(caught.value) == (
        "Could not download the key: Barbican refused it (HTTP 403: Secret "
        "payload retrieval attempt not allowed - please review your "
        "user/project privileges). Either the href belongs to another "
        "project (each project sees only its own), or your role is not "
        "enough: the exercise needs 'member' on your project.")


# ---- instructor docs --------------------------------------------------------

def test_readme_classroom_section_covers_the_cloud_path(clouds):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Classroom: pointing the lab at a real "
                           "cloud", 1)[1].split("\n## ", 1)[0]
    for needed in ("OS_AUTH_URL", "OS_CLOUD", "clouds.yaml", "OS_CACERT",
                   "cacert:", "python -m helpers check",
                   "python -m tests.testcloud up"):
        assert needed in section, needed
    # The start of each learner-facing message, as the README quotes it.
    for phrase in ("Keystone refused the login", "does not allow it",
                   "has no key-manager (Barbican) endpoint",
                   "closed the connection without answering",
                   "speaks plain HTTP", "does not trust the TLS certificate",
                   "does not exist",
                   "nothing answers at", "Keystone accepted your login",
                   "TLS verification is OFF"):
        assert phrase in section, phrase
