"""Orders: ask Barbican to make a key, and watch the order until it has.

An order is Barbican's receipt for work it does on its own time.  It starts
PENDING and ends ACTIVE, with the href of the new secret, or ERROR, with
Barbican's error code and reason.  Introduced in
``notebooks/01-order-an-aes-key.ipynb``.
"""

import logging
import time

from openstack import resource
from openstack.key_manager.v1 import order as sdk_order

from helpers.cleanup import CREATED
from helpers.errors import (InvalidInput, OrderFailed, OrderTimeout,
                            WaitCancelled)
from helpers.exercise import (  # noqa: F401 (re-exported)
    ACTIVE, DEFAULT_ALGORITHM, DEFAULT_BIT_LENGTH, DEFAULT_MODE, DEFAULT_NAME,
    ERROR, KEY_ALGORITHMS, KEY_BIT_LENGTHS, KEY_MODES, PAYLOAD_CONTENT_TYPE,
    PENDING)
from helpers.explain import explained, shorten
from helpers.hrefs import uuid_of

LOG = logging.getLogger(__name__)


class Order(sdk_order.Order):
    """openstacksdk's Order, plus the two fields a failed order carries.

    Barbican returns ``error_status_code`` and ``error_reason`` for an
    order in ERROR; the SDK's class drops them, and they are the only
    explanation a learner gets.
    """

    error_status_code = resource.Body("error_status_code")
    error_reason = resource.Body("error_reason")


def _bit_length(value):
    if isinstance(value, bool):
        value = None
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise InvalidInput(
            f"Bit length {value!r} is not a whole number.",
            "For AES use 128, 192 or 256.") from None


def order_key(conn, name=DEFAULT_NAME, algorithm=DEFAULT_ALGORITHM,
              bit_length=DEFAULT_BIT_LENGTH, mode=DEFAULT_MODE):
    """Submit an order for a symmetric key, as Cinder does for a volume.

    CLI: ``openstack secret order create key --name NAME --algorithm aes
    --bit-length 256 --mode cbc``

    :param conn: an openstacksdk connection (see :func:`helpers.connect`).
    :param name: the name the new secret will carry.
    :param algorithm: e.g. ``"aes"``.
    :param bit_length: e.g. ``256`` (a 32-byte key).
    :param mode: e.g. ``"cbc"``; Barbican records it but does not check it.
    :returns: the new :class:`Order`, usually PENDING.
    :raises InvalidInput: a value is not even of the right kind.
    :raises Refused: Barbican refused the order, with its reason.
    """
    bits = _bit_length(bit_length)
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"Name {name!r} is empty.",
                           f"Give the order a name, e.g. {DEFAULT_NAME!r}.")
    if not isinstance(algorithm, str) or not algorithm.strip():
        raise InvalidInput(f"Algorithm {algorithm!r} is empty.",
                           "For this exercise use 'aes'.")
    meta = {"name": name, "algorithm": algorithm.strip().lower(),
            "bit_length": bits, "mode": (mode or "").strip().lower() or None,
            "payload_content_type": PAYLOAD_CONTENT_TYPE}
    meta = {k: v for k, v in meta.items() if v is not None}

    with explained("order a key", hint=(
            "Check the name (at most 255 characters), the algorithm and the "
            "bit length (AES: 128, 192 or 256), then order again.")):
        created = conn.key_manager.create_order(type="key", meta=meta)
    CREATED.add_order(created.order_ref)
    LOG.info("ordered a %s-bit %s key: %s", bits, algorithm, created.order_ref)
    return get_order(conn, created.order_ref)


def get_order(conn, order):
    """Read an order once: its status and, once ACTIVE, its secret href.

    CLI: ``openstack secret order get ORDER_HREF``

    :param order: the order as href, UUID or SDK object.
    :returns: an :class:`Order`.
    :raises NotFound: Barbican knows no such order (here).
    """
    uuid = uuid_of(order, "order")
    with explained("read the order"):
        return Order.new(id=uuid).fetch(conn.key_manager)


def order_failure(order):
    """The :class:`OrderFailed` that explains an order in ERROR."""
    code = order.error_status_code
    reason = shorten(order.error_reason or "no reason given").rstrip(".")
    if str(code) == "400" or "plugin not found" in reason:
        hint = ("No Barbican plugin can make that key: order again with an "
                "algorithm and bit length it supports (AES: 128, 192 or "
                "256 bits).")
    else:
        hint = ("Barbican could not make that key. Check the algorithm and "
                "bit length (AES: 128, 192 or 256 bits) and order again; "
                "the server's log has details.")
    return OrderFailed(
        f"Order {order.order_ref} ended in ERROR (Barbican's error code "
        f"{code}: {reason}).", hint,
        error_code=code, reason=order.error_reason,
        order_ref=order.order_ref)


def wait_for_order(conn, order, timeout=60.0, progress=None, cancel=None,
                   first_interval=0.1, max_interval=1.0):
    """Read an order until it is ACTIVE, backing off between reads.

    The first read is immediate; the pause after each PENDING read doubles
    from ``first_interval`` up to ``max_interval``, so a quick order is
    noticed at once and a slow one costs at most one request a second.

    :param order: the order as href, UUID or SDK object.
    :param timeout: seconds to wait before giving up; the last read is
        the first one at or after it, so a wait may end up to one pause
        later.
    :param progress: called as ``progress(order, elapsed_seconds)`` after
        every read, e.g. to update a progress bar.
    :param cancel: a ``threading.Event``; setting it stops the wait.
    :returns: the ACTIVE :class:`Order`.
    :raises OrderFailed: the order ended in ERROR (with Barbican's reason).
    :raises OrderTimeout: still PENDING after ``timeout`` seconds.
    :raises WaitCancelled: ``cancel`` was set.
    """
    started = time.monotonic()
    interval = first_interval
    if getattr(order, "status", None) == ACTIVE and getattr(
            order, "secret_ref", None):
        # ACTIVE is final: an order just read as ACTIVE (as order_key
        # often returns it) needs no second read.
        if progress is not None:
            progress(order, 0.0)
        return order
    while True:
        current = get_order(conn, order)
        elapsed = time.monotonic() - started
        if progress is not None:
            progress(current, elapsed)
        if current.status == ACTIVE:
            return current
        if current.status == ERROR:
            raise order_failure(current)
        if elapsed >= timeout:
            raise OrderTimeout(
                f"Order {current.order_ref} is still {current.status} after "
                f"{timeout:g} s.",
                "An order waits for a Barbican worker to fulfil it; it "
                "stays PENDING while no worker takes orders from the queue. "
                "Check that the worker runs (embedded: python -m helpers "
                "server status; orders queued in asynchronous mode need "
                "server start --async), then wait again: the order is not "
                "lost.")
        # The whole pause even before the last read: one cut to fit the
        # timeout made two requests within a second.
        if cancel is not None:
            if cancel.wait(interval):
                raise WaitCancelled(
                    f"Stopped waiting for order {current.order_ref} after "
                    f"{elapsed:.0f} s; it is still {current.status}.",
                    "The order is not lost: check it again or wait again.")
        else:
            time.sleep(interval)
        interval = min(interval * 2, max_interval)


def delete_order(conn, order):
    """Delete an order (its secret stays; delete that separately).

    CLI: ``openstack secret order delete ORDER_HREF``
    """
    uuid = uuid_of(order, "order")
    with explained("delete the order"):
        conn.key_manager.delete_order(uuid, ignore_missing=False)
