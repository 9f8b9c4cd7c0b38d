"""The exercise panel: a form, a button per step, and what each step shows.

A thin layer over the helpers: each button reads the form, calls the same
function a learner can call in a code cell, and shows the result, the
equivalent ``openstack`` command, or the error in words.  Waiting runs in a
background thread so the notebook stays responsive and Stop works.
Introduced in ``notebooks/01-order-an-aes-key.ipynb``.
"""

import html
import logging
import shlex
import threading

import ipywidgets as w

from helpers.checks import check_work, checks_table
from helpers.cleanup import CREATED, clean_up
from helpers.errors import LabError, NotReady, WaitCancelled
from helpers.hexdump import hexdump
from helpers.orders import (ACTIVE, DEFAULT_ALGORITHM, DEFAULT_BIT_LENGTH,
                            DEFAULT_MODE, DEFAULT_NAME, ERROR, KEY_ALGORITHMS,
                            KEY_BIT_LENGTHS, KEY_MODES, get_order,
                            order_failure, order_key, wait_for_order)
from helpers.secrets import DEFAULT_KEY_FILE, fetch_key, get_secret, save_key
from helpers.tables import hexdump_table, order_table, secret_table

LOG = logging.getLogger(__name__)

BADGE_COLOURS = {"PENDING": "#b7791f", "ACTIVE": "#2f855a",
                 "ERROR": "#c53030", "NO ORDER": "#718096"}
# Terminal text in a fixed-width font wherever the panel shows: JupyterLab
# styles <pre> so, but Voila gives it the page's proportional font, and
# hexdump's columns would no longer line up.
PRE_STYLE = "font-family:var(--jp-code-font-family,monospace)"


def _quote(text):
    """Quote for a POSIX shell, with the double quotes learners type."""
    if not any(c in text for c in '"$`\\!'):
        return f'"{text}"'
    return shlex.quote(text)


def order_command(name, algorithm, bit_length, mode):
    """The ``openstack`` command that submits the same order."""
    command = (f"openstack secret order create key --name {_quote(name)} "
               f"--algorithm {shlex.quote(str(algorithm))} "
               f"--bit-length {shlex.quote(str(bit_length))}")
    if mode and mode != DEFAULT_MODE:  # the CLI's own default is cbc
        command += f" --mode {shlex.quote(mode)}"
    return command + ' -c "Order href" -f value'


def fetch_command(secret_ref, key_file):
    return (f"openstack secret get --file {shlex.quote(str(key_file))} "
            f"--payload_content_type 'application/octet-stream' "
            f"{secret_ref}")


def _table_html(frame):
    return frame.to_html(index=False, border=0, classes="lab-table")


class ExercisePanel:
    """The widgets that walk a learner through ordering and reading a key.

    :param conn: an openstacksdk connection (see :func:`helpers.connect`).
    :param key_file: where Fetch saves the key (``ordered_key``).
    :param timeout: the Wait button's default timeout in seconds.
    """

    def __init__(self, conn, key_file=DEFAULT_KEY_FILE, timeout=60):
        self.conn = conn
        self.key_file = key_file
        self.order = None
        self.key = None
        self._cancel = threading.Event()
        self._waiter = None

        self.name = w.Text(value=DEFAULT_NAME, description="Name")
        self.algorithm = w.Dropdown(options=KEY_ALGORITHMS,
                                    value=DEFAULT_ALGORITHM,
                                    description="Algorithm")
        # A combobox: it offers the lengths Barbican accepts but lets a
        # learner type another one and see what Barbican says about it.
        self.bit_length = w.Combobox(
            value=str(DEFAULT_BIT_LENGTH), description="Bit length",
            options=[str(b) for b in KEY_BIT_LENGTHS[DEFAULT_ALGORITHM]],
            ensure_option=False)
        self.mode = w.Dropdown(options=KEY_MODES, value=DEFAULT_MODE,
                               description="Mode")
        self.timeout = w.BoundedIntText(value=timeout, min=1, max=3600,
                                        description="Timeout (s)")
        self.algorithm.observe(self._offer_bit_lengths, "value")
        # CSS classes as hooks for browser tests and learners' own styling.
        for field, hook in ((self.name, "lab-name"),
                            (self.algorithm, "lab-algorithm"),
                            (self.bit_length, "lab-bit-length"),
                            (self.mode, "lab-mode"),
                            (self.timeout, "lab-timeout")):
            field.add_class(hook)

        self.submit_button = self._button("1. Submit order", "lab-submit",
                                          self.submit, "primary")
        self.check_button = self._button("Check status", "lab-check",
                                         self.check_status)
        self.wait_button = self._button("2. Wait until ACTIVE", "lab-wait",
                                        self.wait)
        self.stop_button = self._button("Stop waiting", "lab-stop",
                                        self.stop_waiting, "warning")
        self.fetch_button = self._button(f"3. Fetch key to {key_file}",
                                         "lab-fetch", self.fetch)
        self.hexdump_button = self._button("4. Show hexdump",
                                           "lab-show-hexdump",
                                           self.show_hexdump)
        self.check_work_button = self._button("Check my work",
                                              "lab-check-work",
                                              self.check_my_work, "success")
        self.clean_up_button = self._button("Clean up", "lab-clean-up",
                                            self.clean_up, "danger")

        self.badge = self._html("lab-badge")
        self.progress = w.FloatProgress(value=0, min=0, max=1,
                                        description="Waiting",
                                        layout=w.Layout(visibility="hidden"))
        self.progress.add_class("lab-progress")
        self.message = self._html("lab-message")
        self.cli = self._html("lab-cli")
        self.order_view = self._html("lab-order-table")
        self.secret_view = self._html("lab-secret-table")
        self.hexdump_view = self._html("lab-hexdump")
        self.hexdump_table_view = self._html("lab-hexdump-table")
        self.checks_view = self._html("lab-checks")

        form = w.VBox([self.name, self.algorithm, self.bit_length,
                       self.mode, self.timeout])
        steps = w.HBox([self.submit_button, self.check_button,
                        self.wait_button, self.stop_button,
                        self.fetch_button, self.hexdump_button])
        after = w.HBox([self.check_work_button, self.clean_up_button])
        self.widget = w.VBox([
            form, steps, w.HBox([self.badge, self.progress]), self.message,
            self.cli, self.order_view, self.secret_view, self.hexdump_view,
            self.hexdump_table_view, after, self.checks_view])
        self.widget.add_class("lab-panel")
        self._show_status(None)
        self._update_buttons()

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)

    # -- building blocks ---------------------------------------------------

    def _button(self, label, css_class, action, style=""):
        button = w.Button(description=label, button_style=style,
                          layout=w.Layout(width="auto"))
        button.add_class(css_class)
        button.on_click(lambda _: self._run(action))
        return button

    def _html(self, css_class):
        widget = w.HTML()
        widget.add_class(css_class)
        return widget

    def _offer_bit_lengths(self, change):
        lengths = KEY_BIT_LENGTHS.get(change["new"], ())
        self.bit_length.options = [str(b) for b in lengths]
        if lengths and self.bit_length.value not in self.bit_length.options:
            self.bit_length.value = str(lengths[-1])

    def _run(self, action):
        """Run a button's action; every failure ends up in the panel."""
        self.message.value = ""
        try:
            action()
        except LabError as exc:
            self._show_error(exc)
        except Exception as exc:  # shown, not swallowed: a learner sees it
            LOG.exception("panel action failed")
            self._show_error(exc, unexpected=True)
        finally:
            self._update_buttons()

    def _show_error(self, exc, unexpected=False):
        if unexpected:
            text = (f"Something unexpected went wrong: "
                    f"{type(exc).__name__}: {exc}")
            hint = ("Run the cell again; if it repeats, show this message "
                    "to your instructor.")
        else:
            text, hint = exc.message, exc.hint
        self.message.value = (
            f'<div class="lab-error" style="color:#c53030">'
            f"<b>Error:</b> {html.escape(text)}"
            + (f"<br><b>What to do:</b> {html.escape(hint)}" if hint else "")
            + "</div>")

    def _show_info(self, text):
        self.message.value = (f'<div class="lab-info">{html.escape(text)}'
                              f"</div>")

    def _show_cli(self, *commands):
        lines = "\n".join(html.escape(c) for c in commands)
        self.cli.value = (f"<div>The same in a terminal:</div>"
                          f'<pre class="lab-cli-text" style="{PRE_STYLE}">'
                          f"{lines}</pre>")

    def _show_status(self, status):
        label = status or "NO ORDER"
        colour = BADGE_COLOURS.get(label, "#718096")
        self.badge.value = (
            f'<span class="lab-badge-text" style="background:{colour};'
            f'color:white;padding:2px 10px;border-radius:8px;'
            f'font-weight:bold">{label}</span>')

    def _show_order(self, order):
        self.order = order
        self._show_status(order.status)
        self.order_view.value = _table_html(order_table(order))

    @property
    def waiting(self):
        return self._waiter is not None and self._waiter.is_alive()

    def _update_buttons(self):
        status = self.order.status if self.order else None
        busy = self.waiting
        self.submit_button.disabled = busy
        self.check_button.disabled = busy or self.order is None
        self.wait_button.disabled = busy or status not in ("PENDING", None) \
            or self.order is None
        self.stop_button.disabled = not busy
        self.fetch_button.disabled = busy or status != ACTIVE
        self.hexdump_button.disabled = busy or self.key is None
        self.check_work_button.disabled = busy or self.order is None
        self.clean_up_button.disabled = busy

    # -- the steps -----------------------------------------------------------

    def submit(self):
        """Step 1: order a key with the form's values."""
        name, algorithm = self.name.value, self.algorithm.value
        bits, mode = self.bit_length.value, self.mode.value
        self._show_cli(order_command(name, algorithm, bits, mode))
        # The panel now shows the new order or none: never an earlier order
        # beside the new one's error.  Earlier orders stay recorded for
        # clean-up.
        self.order = self.key = None
        self._show_status(None)
        for view in (self.order_view, self.secret_view, self.hexdump_view,
                     self.hexdump_table_view, self.checks_view):
            view.value = ""
        order = order_key(self.conn, name=name, algorithm=algorithm,
                          bit_length=bits, mode=mode)
        self._show_order(order)
        self._show_cli(order_command(name, algorithm, bits, mode),
                       f"# answered: {order.order_ref}")
        self._raise_if_failed(order)

    def _raise_if_failed(self, order):
        if order.status == ERROR:
            raise order_failure(order)

    def _need_order(self):
        # Buttons are disabled until then; code may still call the steps.
        if self.order is None:
            raise NotReady("There is no order yet.",
                           "Submit an order first (step 1).")

    def check_status(self):
        """Read the order once and show its table."""
        self._need_order()
        order = get_order(self.conn, self.order)
        self._show_order(order)
        self._show_cli(f"openstack secret order get {order.order_ref}")
        self._raise_if_failed(order)

    def wait(self):
        """Step 2: wait in the background until the order is ACTIVE."""
        if self.waiting:
            return
        self._need_order()
        self._cancel.clear()
        self._show_cli(
            f"watch -n 1 openstack secret order get "
            f"{self.order.order_ref} -c Status -f value")
        timeout = float(self.timeout.value)
        self.progress.max = timeout
        self.progress.value = 0
        self.progress.layout.visibility = "visible"
        self._waiter = threading.Thread(target=self._wait_in_background,
                                        args=(timeout,), daemon=True)
        self._waiter.start()

    def _wait_in_background(self, timeout):
        def progress(order, elapsed):
            self._show_status(order.status)
            self.progress.value = min(elapsed, timeout)
            self.progress.description = f"{elapsed:.0f} s"

        try:
            self._update_buttons()
            order = wait_for_order(self.conn, self.order, timeout=timeout,
                                   progress=progress, cancel=self._cancel)
            self._show_order(order)
            self._show_info(f"The order is ACTIVE. Secret href: "
                            f"{order.secret_ref}")
        except LabError as exc:
            try:
                self._show_order(get_order(self.conn, self.order))
            except LabError:
                pass
            if isinstance(exc, WaitCancelled):
                self._show_info(str(exc))  # the learner asked for it
            else:
                self._show_error(exc)
        except Exception as exc:  # a thread's error would otherwise vanish
            LOG.exception("waiting failed")
            self._show_error(exc, unexpected=True)
        finally:
            self.progress.layout.visibility = "hidden"
            self._waiter = None
            self._update_buttons()

    def join(self, timeout=None):
        """Block until a running wait ends (for code cells and tests)."""
        waiter = self._waiter
        if waiter is not None:
            waiter.join(timeout)

    def stop_waiting(self):
        """Ask the background wait to stop at its next pause."""
        self._cancel.set()

    def fetch(self):
        """Step 3: download the key and save it to the key file."""
        self._need_order()
        order = get_order(self.conn, self.order)
        self._show_order(order)
        self._show_cli(fetch_command(order.secret_ref, self.key_file))
        key = fetch_key(self.conn, order)
        # A key this notebook saved there itself may be replaced by the new
        # one; anything else in its place is the learner's, and stays.
        path = save_key(key, self.key_file,
                        overwrite=CREATED.owns_file(self.key_file))
        self.key = key
        self.secret_view.value = _table_html(
            secret_table(get_secret(self.conn, order.secret_ref)))
        self._show_info(f"Saved {len(key)} bytes ({len(key) * 8} bits) to "
                        f"{path} with mode 0600.")

    def show_hexdump(self):
        """Step 4: show the key as ``hexdump -C`` prints it."""
        if self.key is None:
            raise NotReady("No key has been fetched yet.",
                           "Fetch the key first (step 3).")
        self._show_cli(f"hexdump -C {shlex.quote(str(self.key_file))}")
        self.hexdump_view.value = (f'<pre class="lab-hexdump-text" '
                                   f'style="{PRE_STYLE}">'
                                   f"{html.escape(hexdump(self.key))}</pre>")
        self.hexdump_table_view.value = _table_html(hexdump_table(self.key))

    def check_my_work(self):
        """Check the result and say what is right and what is missing."""
        checks = check_work(self.conn, self.order, self.key_file)
        self.checks_view.value = _table_html(checks_table(checks))
        if all(c.ok for c in checks):
            self._show_info("All checks pass: well done.")
        else:
            missing = sum(not c.ok for c in checks)
            self._show_info(f"{missing} check(s) to fix: see the table.")

    def clean_up(self):
        """Delete what this notebook created: orders, secrets, key file."""
        report = clean_up(self.conn)
        self.order = None
        self.key = None
        self._show_status(None)
        for view in (self.order_view, self.secret_view, self.hexdump_view,
                     self.hexdump_table_view, self.checks_view):
            view.value = ""
        self._show_cli("openstack secret delete SECRET_HREF",
                       "openstack secret order delete ORDER_HREF",
                       f"rm {shlex.quote(str(self.key_file))}")
        self._show_info("Clean-up: " + "; ".join(report) + ".")

    # -- for code cells and tests -------------------------------------------

    def state(self):
        """What the panel shows, as plain data (badge, buttons, message)."""
        buttons = {name: not getattr(self, f"{name}_button").disabled
                   for name in ("submit", "check", "wait", "stop", "fetch",
                                "hexdump", "check_work", "clean_up")}
        return {"status": self.order.status if self.order else None,
                "badge": self.badge.value, "enabled": buttons,
                "message": self.message.value, "cli": self.cli.value}
