"""Notebook comforts: errors shown as advice, and a progress bar for waits.

Importing :mod:`helpers` inside IPython makes a :class:`LabError` raised in
a cell show as two plain lines (what went wrong, what to do) instead of a
traceback; other exceptions keep IPython's usual display.  Outside IPython
nothing changes.
"""

import html
import logging

from helpers.errors import LabError

LOG = logging.getLogger(__name__)


def _show_lab_error(shell, etype, value, tb, tb_offset=None):
    from IPython.display import HTML, display

    hint = (f"<br><b>What to do:</b> {html.escape(value.hint)}"
            if value.hint else "")
    display(HTML(f'<div class="lab-error" style="color:#c53030">'
                 f"<b>Error:</b> {html.escape(value.message)}{hint}</div>"))
    return []


def setup_notebook():
    """In IPython: show :class:`LabError` as advice and hrefs uncut.

    pandas cuts cells at 50 characters, and an href is longer: the tables
    would show "http://127.0.0.1:9311/v1/orders/8e22…" otherwise.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    shell.set_custom_exc((LabError,), _show_lab_error)
    import pandas as pd
    pd.set_option("display.max_colwidth", None)
    return True


def show_progress(timeout=60):
    """A progress bar for :func:`helpers.wait_for_order`'s ``progress``.

    :param timeout: the wait's timeout, the bar's full length.
    :returns: a callback ``progress(order, elapsed)`` that shows the bar.
    """
    import ipywidgets as w
    from IPython.display import display

    bar = w.FloatProgress(value=0, min=0, max=timeout, description="0 s")
    label = w.Label("waiting for the first answer")
    display(w.HBox([bar, label]))

    def progress(order, elapsed):
        bar.value = min(elapsed, timeout)
        bar.description = f"{elapsed:.0f} s"
        label.value = f"order is {order.status}"

    return progress
