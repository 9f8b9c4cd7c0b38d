"""Check your work: is the learner's key where the exercise wants it?

Introduced at the end of ``notebooks/01-order-an-aes-key.ipynb``.
"""

import stat
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from helpers.errors import LabError
from helpers.orders import ACTIVE, get_order
from helpers.secrets import DEFAULT_KEY_FILE, get_payload


@dataclass
class Check:
    """One thing checked: whether it holds, and what it means."""

    ok: bool
    what: str
    advice: str = ""

    def __str__(self):
        mark = "✔" if self.ok else "✘"
        return f"{mark} {self.what}" + ("" if self.ok else
                                        f" — {self.advice}")


def check_work(conn, order, key_file=DEFAULT_KEY_FILE):
    """Check the exercise's result, step by step, in plain words.

    :param order: the learner's order (href, UUID or object), or ``None``.
    :param key_file: where the key should have been saved.
    :returns: a list of :class:`Check`, in the exercise's order; all ``ok``
        when everything is right.
    """
    if order is None:
        return [Check(False, "No order yet.",
                      "Submit an order first (step 1).")]
    checks = []
    try:
        current = get_order(conn, order)
    except LabError as exc:
        return [Check(False, "The order could not be read.", str(exc))]
    active = current.status == ACTIVE
    checks.append(Check(active, f"The order is {current.status}.",
                        "Wait until it is ACTIVE (step 2)."))
    expected = int(current.meta.get("bit_length", 256)) // 8
    path = Path(key_file)
    if not path.is_file():
        checks.append(Check(False, f"{path.name} does not exist yet.",
                            "Fetch the key into it (step 3)."))
        return checks
    checks.append(Check(True, f"{path.name} exists."))
    try:
        data = path.read_bytes()
    except OSError as exc:
        checks.append(Check(False, f"{path.name} cannot be read: "
                                   f"{exc.strerror}.",
                            f"Make it yours and private: chmod 600 "
                            f"{path.name}."))
        return checks
    checks.append(Check(
        len(data) == expected,
        f"{path.name} holds {len(data)} bytes; a {expected * 8}-bit key is "
        f"{expected} bytes.",
        "Fetch the key again, as application/octet-stream."))
    mode = stat.S_IMODE(path.stat().st_mode)
    private = mode & 0o077 == 0
    checks.append(Check(
        private,
        f"{path.name} has mode {mode:04o}: "
        + ("only you can read it." if private else "others can read it."),
        f"Keys must stay private: run chmod 600 {path.name}."))
    if active:
        try:
            stored = get_payload(conn, current.secret_ref)
        except LabError as exc:
            checks.append(Check(False, "The key in Barbican could not be "
                                       "read.", str(exc)))
        else:
            checks.append(Check(
                stored == data,
                f"{path.name} equals the secret stored in Barbican.",
                "It holds other bytes: fetch this order's key again."))
    return checks


def checks_table(checks):
    """The checks as a table with a ✔/✘ column."""
    return pd.DataFrame({"": ["✔" if c.ok else "✘" for c in checks],
                         "Check": [c.what for c in checks],
                         "What to do": ["" if c.ok else c.advice
                                        for c in checks]})
