"""Servers, a headless Chromium and page helpers for the browser tests.

The tests click through the exercise notebook as a learner does, in a real
JupyterLab (and Voilà) driven by Playwright through Debian's Chromium.
Everything they start runs on 127.0.0.1 from temporary folders: the
embedded Barbican's state, a copy of ``notebooks/`` (so ``ordered_key``
and checkpoints never land in the repository) and private Jupyter config,
data, runtime, settings and workspace folders.  Servers are stopped by
their own process ids, and so are any kernels they leave behind.
"""

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import ROOT, free_port, require
from helpers import embedded

LOG = logging.getLogger(__name__)

NOTEBOOK = "notebooks/01-order-an-aes-key.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
# Debian's package: the binary itself, or the wrapper script on PATH.
CHROMIUM = ("/usr/lib/chromium/chromium", "chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-sync",
                  "--disable-component-update"]
LOOPBACK = ("127.0.0.1", "localhost")
# Upper bounds for conditions on a shared 2-core machine, never sleeps.
SERVER_TIMEOUT = 60.0
KERNEL_TIMEOUT_MS = 90_000
UI_TIMEOUT_MS = 30_000
IDLE_KERNEL = "Python 3 (ipykernel) | Idle"

expect.set_options(timeout=UI_TIMEOUT_MS)


def find_chromium():
    """The path of Debian's Chromium, or None when it is not installed."""
    for candidate in CHROMIUM:
        found = shutil.which(candidate)
        if found:
            return found
    return None


# -- servers ----------------------------------------------------------------

class ServerProcess:
    """A server this test run started, stopped by its own process id.

    :param name: what it is, for messages ("JupyterLab", "Voila").
    :param command: the command line.
    :param env: its environment.
    :param cwd: its working directory.
    :param log: the file that receives its output.
    """

    def __init__(self, name, command, env, cwd, log):
        self.name, self.log = name, log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def wait_until_answers(self, url, timeout=SERVER_TIMEOUT):
        """Poll ``url`` until any HTTP answer comes back.

        :raises RuntimeError: the server exited or did not answer in time.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code "
                                   f"{self.process.returncode}: "
                                   f"{self.log_tail()}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # an error page is an answer too
            except OSError:
                time.sleep(0.2)  # the poll interval, not a wait for luck
        raise RuntimeError(f"{self.name} did not answer within {timeout} s: "
                           f"{self.log_tail()}")

    def log_tail(self, lines=15):
        text = Path(self.log).read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout=20):
        """Stop the server, then any kernel it did not take down with it.

        :returns: the pids of kernels that outlived their server.
        """
        try:
            children = psutil.Process(self.process.pid).children(
                recursive=True)
        except psutil.NoSuchProcess:
            children = []
        self.process.terminate()  # Jupyter shuts its kernels down on TERM
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # psutil checks each process's start time, so a reused pid is safe.
        alive = [c for c in children if c.is_running()]
        for child in alive:
            child.terminate()
        _, still = psutil.wait_procs(alive, timeout=10)
        for child in still:
            child.kill()
        return [c.pid for c in alive]


def jupyter_environment(base, state_dir, disabled_extensions=()):
    """Environment for a Jupyter server with folders of its own.

    News and update checks and autosave are off in its settings.

    :param base: a temporary folder to hold the private Jupyter folders.
    :param state_dir: the embedded Barbican's state folder.
    :param disabled_extensions: lab extensions to turn off, e.g. to show
        what a learner sees without the widget front end.
    :returns: the environment, without any OS_* variable.
    """
    folders = {name: base / name.lower().replace("_dir", "")
               for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR",
                            "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR",
                            "JUPYTERLAB_WORKSPACES_DIR")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    settings = folders["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab"
    _write_json(settings / "apputils-extension/notification"
                ".jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})
    _write_json(settings / "docmanager-extension/plugin.jupyterlab-settings",
                {"autosave": False})
    if disabled_extensions:
        _write_json(folders["JUPYTER_CONFIG_DIR"] / "labconfig"
                    / "page_config.json",
                    {"disabledExtensions": {name: True for name in
                                            disabled_extensions}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({k: str(v) for k, v in folders.items()})
    env[embedded.STATE_ENV] = str(state_dir)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def copy_notebooks(base):
    """A copy of notebooks/ under ``base``: the folder servers serve."""
    root = base / "root"
    shutil.copytree(ROOT / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns("ordered_key",
                                                  ".ipynb_checkpoints"))
    return root


class JupyterLab:
    """A JupyterLab server on a free port, with a token, for one module.

    :param base: a temporary folder for its files.
    :param env: from :func:`jupyter_environment`.
    """

    def __init__(self, base, env):
        self.root = copy_notebooks(base)
        self.token = secrets.token_hex(16)
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.server = ServerProcess("JupyterLab", [
            sys.executable, "-m", "jupyter", "lab", "--no-browser",
            "--allow-root", "--ip=127.0.0.1", f"--port={port}",
            "--port-retries=0", f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}"],
            env, self.root, base / "jupyterlab.log")
        self.server.wait_until_answers(self.url("api/status"))

    def url(self, path):
        return f"{self.base_url}/{path}?token={self.token}"

    def api(self, path, method="GET"):
        request = urllib.request.Request(
            f"{self.base_url}/api/{path}", method=method,
            headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def shut_down_sessions(self, timeout=30):
        """Delete every session; wait until their kernels are gone."""
        for session in self.api("sessions"):
            self.api(f"sessions/{session['id']}", method="DELETE")
        deadline = time.monotonic() + timeout
        while self.api("kernels") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.api("kernels") == [], "a kernel outlived its session"


class Voila:
    """Voilà serving the exercise notebook as an app, with a token.

    :param base: a temporary folder for its files.
    :param env: from :func:`jupyter_environment`.
    """

    def __init__(self, base, env):
        self.root = copy_notebooks(base)
        self.token = secrets.token_hex(16)
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.server = ServerProcess("Voila", [
            sys.executable, "-m", "voila", "--no-browser",
            f"--port={port}", "--Voila.ip=127.0.0.1",
            f"--token={self.token}", NOTEBOOK],
            env, self.root, base / "voila.log")
        # Not the notebook's own page: asking for it runs the notebook.
        self.server.wait_until_answers(f"{self.base_url}/voila/static/")

    def url(self):
        return f"{self.base_url}/?token={self.token}"

    def open(self, page):
        """Open the app in ``page``; return its panel once all cells ran.

        Voila runs every cell before it shows any, then drops its
        "Running..." cover.
        """
        page.goto(self.url())
        expect(page.locator("#loading")).to_have_count(
            0, timeout=KERNEL_TIMEOUT_MS)
        panel = Panel(page)
        expect(panel.root).to_be_visible()
        return panel


# -- the browser --------------------------------------------------------------

def launch_chromium(playwright):
    """Debian's headless Chromium; fails in CI and skips elsewhere without.
    """
    path = find_chromium()
    require(path, "Debian's Chromium (for the browser tests)",
            "sudo apt-get install chromium")
    return playwright.chromium.launch(executable_path=path,
                                      args=CHROMIUM_FLAGS)


def new_page(browser):
    """A page in a fresh context that can reach 127.0.0.1 only.

    Voilà's page asks a CDN for icon fonts: refused at once here instead of
    hanging offline, and no test ever talks to another host.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)

    def loopback_only(route):
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            LOG.info("refused a request to %s", route.request.url)
            route.abort()

    context.route("**/*", loopback_only)
    return context.new_page()


def screenshot(locator, name):
    """Save what ``locator`` shows to test-artifacts/``name``.png.

    JupyterLab scrolls inside its own panel, so an element taller than
    the window would be cut: the window grows to fit it first.
    """
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page = locator.page
    height = locator.bounding_box()["height"]
    size = page.viewport_size
    if height + 300 > size["height"]:
        page.set_viewport_size({"width": size["width"],
                                "height": int(height) + 300})
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=path)
    return path


# -- what the learner sees ---------------------------------------------------

class Panel:
    """The exercise panel on a page, found by its CSS class hooks.

    :param page: a Playwright page that shows the panel.
    """

    def __init__(self, page):
        self.page = page
        self.root = page.locator(".lab-panel")

    def button(self, hook):
        return self.root.locator(f"button.{hook}")

    def click(self, hook):
        """Click a step's button once it is enabled."""
        self.button(hook).click()

    @property
    def badge(self):
        return self.root.locator(".lab-badge-text")

    @property
    def error(self):
        return self.root.locator(".lab-message .lab-error")

    @property
    def info(self):
        return self.root.locator(".lab-message .lab-info")

    @property
    def bit_length(self):
        return self.root.locator(".lab-bit-length input")

    def type_bit_length(self, text):
        """Type a bit length into the combobox, as a learner would."""
        self.bit_length.fill(text)

    def choose_algorithm(self, algorithm):
        self.root.locator(".lab-algorithm select").select_option(algorithm)

    def table(self, hook):
        """A table widget's rows as {first column: second column}."""
        rows = self.root.locator(f".{hook} tr")
        expect(rows.first).to_be_visible()
        return {cells[0]: cells[1] for cells in
                (r.locator("td").all_inner_texts() for r in rows.all())
                if len(cells) >= 2}

    def hexdump(self):
        """The hexdump the panel shows, once it shows one."""
        text = self.root.locator(".lab-hexdump pre.lab-hexdump-text")
        expect(text).to_contain_text("00000020")
        return ShownHexdump(text.inner_text())

    def screenshot(self, name):
        return screenshot(self.root, name)

    def assert_fixed_width(self, selector):
        """Assert ``selector`` shows in a fixed-width font.

        ``hexdump -C`` output lines up in columns only then, as it does in
        a terminal; an app's style may give a ``pre`` a proportional font.
        """
        widths = self.root.locator(selector).evaluate("""e => {
            const s = getComputedStyle(e);
            const pen = document.createElement('canvas').getContext('2d');
            pen.font = `${s.fontSize} ${s.fontFamily}`;
            return [s.fontFamily, pen.measureText('iiii').width,
                    pen.measureText('MMMM').width];
        }""")
        family, narrow, wide = widths
        assert narrow == wide, f"{selector} is in a proportional font: " \
                               f"{family}"

    def order_and_fetch(self):
        """Submit, see ACTIVE, fetch and show the hexdump, by clicking."""
        self.click("lab-submit")
        # The embedded Barbican makes the key while answering the order,
        # so the badge reads ACTIVE at once and Wait has nothing to wait
        # for: the learner confirms with Check status instead.
        expect(self.badge).to_have_text("ACTIVE")
        expect(self.button("lab-wait")).to_be_disabled()
        self.click("lab-check")
        expect(self.badge).to_have_text("ACTIVE")
        self.click("lab-fetch")
        expect(self.info).to_contain_text("Saved 32 bytes (256 bits)")
        self.click("lab-show-hexdump")
        return self.hexdump()


@dataclass
class ShownHexdump:
    """A ``hexdump -C`` listing as the page shows it, and what it says."""

    text: str
    key: bytes = b""
    rows: list = field(default_factory=list)  # bytes in each row

    def __post_init__(self):
        for line in self.text.splitlines():
            match = re.match(r"^[0-9a-f]{8}  (.*?)\s*\|", line)
            if match:
                row = bytes.fromhex(match.group(1).replace(" ", ""))
                self.rows.append(len(row))
                self.key += row

    @property
    def last_line(self):
        return self.text.splitlines()[-1]


class LabNotebook:
    """The exercise notebook open in JupyterLab.

    :param page: a Playwright page.
    :param lab: the :class:`JupyterLab` serving it.
    """

    def __init__(self, page, lab):
        self.page, self.lab = page, lab
        self.panel = Panel(page)

    def open(self):
        """Open the notebook; return once its kernel is really ready.

        The toolbar says idle before any kernel is attached, and Run All
        then does nothing: the status bar naming the kernel is the sign.
        """
        self.page.goto(self.lab.url(f"lab/tree/{NOTEBOOK}"))
        kernel = self.page.locator(
            ".jp-StatusBar-TextItem[title^='Change kernel']")
        expect(kernel).to_have_text(IDLE_KERNEL, timeout=KERNEL_TIMEOUT_MS)
        # Nothing has run yet: a panel now would be stale widget state
        # saved in the notebook, buttons with no kernel behind them.
        expect(self.panel.root).to_have_count(0)
        expect(self.page.locator(".jp-Notebook")).not_to_contain_text(
            "Error displaying widget")

    def run_all(self):
        """Run all cells from the Run menu; return when every one ran."""
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.get_by_role("menuitem", name="Run All Cells",
                              exact=True).click()
        self.page.wait_for_function(
            """() => {
                const prompts = [...document.querySelectorAll(
                    '.jp-CodeCell .jp-InputArea-prompt')];
                return prompts.length > 0 &&
                    prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
            }""", timeout=KERNEL_TIMEOUT_MS)
        try:
            expect(self.panel.root).to_be_visible()
        except AssertionError:
            cell = self.page.locator(".jp-CodeCell",
                                     has_text="ExercisePanel(")
            cell.scroll_into_view_if_needed()  # for the failure screenshot
            shown = cell.locator(".jp-OutputArea").text_content()
            raise AssertionError(
                f"The panel did not render as widgets (is the widget front "
                f"end missing?); its cell shows: {shown[:200]!r}") from None

    def assert_nothing_escaped(self):
        """No traceback on the page and nothing in the log console.

        A handler's print or error that no widget catches goes to the
        log console, where a learner never looks.
        """
        notebook = self.page.locator(".jp-Notebook")
        expect(notebook).not_to_contain_text("Traceback")
        expect(notebook.locator(
            "[data-mime-type='application/vnd.jupyter.stderr']")
        ).to_have_count(0)
        expect(self.page.locator(".jp-LogConsoleStatusItem"),
               "something went to the log console, not the panel"
               ).to_be_hidden()


# -- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="module")
def barbican(tmp_path_factory):
    """An embedded Barbican for the browser tests alone (they stop it)."""
    state_dir = tmp_path_factory.mktemp("browser-barbican")
    status = embedded.start(state_dir, free_port())
    yield status
    embedded.stop(state_dir)


@pytest.fixture(scope="module")
def chromium():
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def lab(chromium, tmp_path_factory, barbican):
    # chromium first: without a browser, nothing else needs to start.
    base = tmp_path_factory.mktemp("jupyterlab")
    server = JupyterLab(base, jupyter_environment(base, barbican.state_dir))
    yield server
    leftovers = server.server.stop()
    assert leftovers == [], f"kernels outlived JupyterLab: {leftovers}"


REPORTS = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test, for fixtures to look at."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


@contextlib.contextmanager
def browser_page(request, browser):
    """A fresh page; if the test fails, a screenshot of it is kept."""
    page = new_page(browser)
    try:
        yield page
        call = request.node.stash.get(REPORTS, {}).get("call")
        failed = call is not None and call.failed
    except BaseException:
        failed = True  # the fixture's set-up failed
        raise
    finally:
        if failed:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(
                path=ARTIFACTS / f"{request.node.name}-failure.png")
        page.context.close()


@pytest.fixture
def page(request, chromium):
    with browser_page(request, chromium) as opened:
        yield opened


@pytest.fixture
def notebook(request, chromium, lab):
    """The exercise notebook, open and run; its session deleted after."""
    try:
        with browser_page(request, chromium) as page:
            opened = LabNotebook(page, lab)
            opened.open()
            opened.run_all()
            yield opened
    finally:
        lab.shut_down_sessions()


@pytest.fixture
def voila(chromium, tmp_path, barbican):
    """Voila serving a copy of the notebook, for one test."""
    server = Voila(tmp_path, jupyter_environment(tmp_path,
                                                 barbican.state_dir))
    yield server
    leftovers = server.server.stop()
    assert leftovers == [], f"kernels outlived Voila: {leftovers}"
