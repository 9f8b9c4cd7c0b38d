"""barbican-lab's helpers: order an AES key from Barbican and look at it.

The notebooks, the command line (``python -m helpers``) and the tests all
call these functions; the notebook's buttons are a thin layer over them.

Names are imported when first used: the embedded server's own processes
import this package too, and must not pay for pandas, openstacksdk and
ipywidgets, which only the learner's side needs.
"""

import importlib
import sys

from helpers.errors import (AuthError, ConnectError, InvalidInput,
                            KeyFileExists, LabError, NotFound, NotReady,
                            OrderFailed, OrderTimeout, Refused, ServerError,
                            WaitCancelled)
# Eager, and after its module: helpers.hexdump is the function, never the
# submodule of the same name that a later import would otherwise leave.
from helpers.hexdump import hexdump

# Each public name and the module that holds it.
_WHERE = {
    "connect": "connection", "describe": "connection",
    "order_key": "orders", "get_order": "orders",
    "wait_for_order": "orders", "delete_order": "orders",
    "KEY_ALGORITHMS": "orders", "KEY_BIT_LENGTHS": "orders",
    "KEY_MODES": "orders",
    "fetch_key": "secrets", "get_payload": "secrets", "get_secret": "secrets",
    "secret_of": "secrets", "save_key": "secrets",
    "delete_secret": "secrets",
    "order_table": "tables", "secret_table": "tables",
    "hexdump_table": "tables",
    "check_work": "checks", "checks_table": "checks",
    "clean_up": "cleanup",
    "show_progress": "notebook", "setup_notebook": "notebook",
    "ExercisePanel": "panel",
    "pause_worker": "embedded", "resume_worker": "embedded",
    "worker_controls": "worker_controls",
}


def __getattr__(name):
    if name in _WHERE:
        module = importlib.import_module(f"helpers.{_WHERE[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    try:  # a submodule, as in helpers.embedded.switch_mode(...)
        return importlib.import_module(f"helpers.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"helpers.{name}":
            raise  # a missing dependency: say which
        raise AttributeError(
            f"module 'helpers' has no attribute {name!r}") from None


def __dir__():
    return sorted(set(globals()) | set(_WHERE))


if "IPython" in sys.modules:
    # In a notebook: errors as advice, hrefs uncut (see helpers.notebook).
    importlib.import_module("helpers.notebook").setup_notebook()

__all__ = sorted(_WHERE) + ["hexdump",
    "LabError", "AuthError", "ConnectError", "InvalidInput", "KeyFileExists",
    "NotFound", "NotReady", "OrderFailed", "OrderTimeout", "Refused",
    "ServerError", "WaitCancelled",
]
