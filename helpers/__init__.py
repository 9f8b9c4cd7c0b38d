"""barbican-lab's helpers: order an AES key from Barbican and look at it.

The notebooks, the command line (``python -m helpers``) and the tests all
call these functions; the notebook's buttons are a thin layer over them.
"""

from helpers.checks import check_work, checks_table
from helpers.cleanup import clean_up
from helpers.connection import connect, describe
from helpers.embedded import pause_worker, resume_worker
from helpers.errors import (AuthError, ConnectError, InvalidInput,
                            KeyFileExists, LabError, NotFound, NotReady,
                            OrderFailed, OrderTimeout, Refused, ServerError,
                            WaitCancelled)
from helpers.hexdump import hexdump
from helpers.orders import (KEY_ALGORITHMS, KEY_BIT_LENGTHS, KEY_MODES,
                            delete_order, get_order, order_key,
                            wait_for_order)
from helpers.secrets import (delete_secret, fetch_key, get_payload,
                             get_secret, save_key, secret_of)
from helpers.notebook import setup_notebook, show_progress
from helpers.tables import hexdump_table, order_table, secret_table


def __getattr__(name):
    # The panel imports ipywidgets; load it only when a notebook asks.
    if name == "ExercisePanel":
        from helpers.panel import ExercisePanel
        return ExercisePanel
    if name == "worker_controls":
        from helpers.worker_controls import worker_controls
        return worker_controls
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


setup_notebook()

__all__ = [
    "connect", "describe", "order_key", "get_order", "wait_for_order",
    "delete_order", "fetch_key", "get_payload", "get_secret", "secret_of",
    "save_key", "delete_secret", "hexdump", "order_table", "secret_table",
    "hexdump_table", "check_work", "checks_table", "clean_up",
    "show_progress", "ExercisePanel", "pause_worker", "resume_worker",
    "worker_controls", "KEY_ALGORITHMS", "KEY_BIT_LENGTHS",
    "KEY_MODES",
    "LabError", "AuthError", "ConnectError", "InvalidInput", "KeyFileExists",
    "NotFound", "NotReady", "OrderFailed", "OrderTimeout", "Refused",
    "ServerError", "WaitCancelled",
]
