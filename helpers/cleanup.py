"""Remember what this notebook created, and take exactly that away again.

Orders and saved key files are recorded as the helpers create them, in this
Python process only.  :func:`clean_up` deletes those; anything else it is
asked to delete needs a yes from ``confirm`` first.
"""

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from helpers.errors import LabError, NotFound
from helpers.hrefs import uuid_of

LOG = logging.getLogger(__name__)


@dataclass
class Created:
    """Hrefs of orders, and key files with what was saved in them, created
    in this process."""

    orders: list = field(default_factory=list)
    files: dict = field(default_factory=dict)

    def add_order(self, order_ref):
        if order_ref not in self.orders:
            self.orders.append(order_ref)

    def add_file(self, path, data):
        self.files[Path(path).resolve()] = hashlib.sha256(data).hexdigest()

    def owns_file(self, path):
        """True when ``path`` still holds exactly what was saved there."""
        path = Path(path).resolve()
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return False
        return self.files.get(path) == digest

    def __bool__(self):
        return bool(self.orders or self.files)


CREATED = Created()


def _delete_order_and_secret(conn, order_ref, report):
    # Imported here: orders and secrets import this module to record.
    from helpers.orders import delete_order, get_order
    from helpers.secrets import delete_secret

    try:
        order = get_order(conn, order_ref)
    except NotFound:
        report.append(f"order {order_ref} was already gone")
        return
    if order.secret_ref:
        try:
            delete_secret(conn, order.secret_ref)
            report.append(f"deleted secret {order.secret_ref}")
        except NotFound:
            report.append(f"secret {order.secret_ref} was already gone")
    delete_order(conn, order_ref)
    report.append(f"deleted order {order_ref}")


def clean_up(conn, extra=(), confirm=None, created=CREATED):
    """Delete the orders, secrets and key files this notebook created.

    CLI: ``openstack secret delete SECRET_HREF``, ``openstack secret order
    delete ORDER_HREF``, ``rm ordered_key``

    :param conn: an openstacksdk connection.
    :param extra: more order hrefs or file paths to delete, which this
        notebook did not create.
    :param confirm: called as ``confirm(description)`` for each of
        ``extra``; deletes it only if it returns true.  Without it, nothing
        in ``extra`` is deleted.
    :returns: a list of lines saying what was deleted and what was left.
    :raises LabError: a deletion failed; what was deleted before stays
        deleted and is no longer recorded.
    """
    report = []
    for order_ref in list(created.orders):
        _delete_order_and_secret(conn, order_ref, report)
        created.orders.remove(order_ref)
    for path in list(created.files):
        if created.owns_file(path):
            try:
                path.unlink()
                report.append(f"removed {path.name}")
            except OSError as exc:
                report.append(f"could not remove {path.name}: "
                              f"{exc.strerror}; remove it with rm")
        elif path.exists():
            # Someone saved other bytes there since (the CLI, say): theirs.
            report.append(f"left {path.name}: it changed since this "
                          f"notebook saved it")
        del created.files[path]
    for thing in extra:
        is_file = not str(thing).startswith(("http://", "https://"))
        what = f"file {thing}" if is_file else f"order {thing}"
        if confirm is None or not confirm(f"{what} was not created in this "
                                          f"notebook. Delete it?"):
            report.append(f"left {what}: not created in this notebook")
            continue
        if is_file:
            try:
                Path(thing).unlink()
            except OSError as exc:
                raise LabError(f"Could not remove {thing}: {exc.strerror}.",
                               "Remove it by hand with rm.") from exc
            report.append(f"removed {thing}")
        else:
            uuid_of(thing, "order")
            _delete_order_and_secret(conn, thing, report)
    if not report:
        report.append("nothing to clean up: this notebook created nothing "
                      "that is still there")
    LOG.info("clean-up: %s", "; ".join(report))
    return report
