"""One learner's exercise, two ways: through the helpers, and bare HTTP.

Both make the same order (an AES-256 key), read it until ACTIVE and fetch
the payload.  :class:`RequestLog` counts the requests the helpers really
send, at the HTTP adapter under openstacksdk's session.
"""

import time

import requests

import helpers

ORDER = {"type": "key", "meta": {
    "name": "Order for an AES key", "algorithm": "aes", "bit_length": 256,
    "mode": "cbc", "payload_content_type": "application/octet-stream"}}
KEY_LENGTH = 32
HTTP_TIMEOUT = 30.0
READ_PAUSE = 0.05
MAX_READS = 200


class ExerciseError(Exception):
    """A round trip went wrong; the message says at which call."""


def uuid_of(href):
    return href.rstrip("/").rsplit("/", 1)[1]


class BareClient:
    """A plain ``requests`` session making the exercise's three calls.

    The connection is kept alive between calls, as openstacksdk's session
    does, when the server allows it.
    """

    def __init__(self, endpoint):
        self.base = f"{endpoint}/v1"
        self.session = requests.Session()

    def _call(self, method, path, expect, **kwargs):
        response = self.session.request(method, f"{self.base}/{path}",
                                        timeout=HTTP_TIMEOUT, **kwargs)
        if response.status_code != expect:
            raise ExerciseError(f"{method} {path.split('/')[0]}: HTTP "
                                f"{response.status_code}")
        return response

    def order(self):
        """POST an order; returns its UUID."""
        created = self._call("POST", "orders", 202, json=ORDER)
        return uuid_of(created.json()["order_ref"])

    def read_until_active(self, order_uuid):
        """GET the order until ACTIVE; returns its secret's UUID."""
        for _ in range(MAX_READS):
            order = self._call("GET", f"orders/{order_uuid}", 200).json()
            if order["status"] == "ACTIVE":
                return uuid_of(order["secret_ref"])
            if order["status"] == "ERROR":
                raise ExerciseError(f"order ended in ERROR: "
                                    f"{order.get('error_reason')}")
            time.sleep(READ_PAUSE)
        raise ExerciseError("order still PENDING after "
                            f"{MAX_READS} reads")

    def payload(self, secret_uuid):
        """GET the secret's payload as bytes."""
        return self._call(
            "GET", f"secrets/{secret_uuid}/payload", 200,
            headers={"Accept": "application/octet-stream"}).content

    def round_trip(self):
        """Order, read until ACTIVE, fetch; returns (secret UUID, key)."""
        secret = self.read_until_active(self.order())
        key = self.payload(secret)
        if len(key) != KEY_LENGTH:
            raise ExerciseError(f"payload of {len(key)} bytes, not "
                                f"{KEY_LENGTH}")
        return secret, key

    def close(self):
        self.session.close()


def helpers_round_trip(conn):
    """The exercise through ``order_key``, ``wait_for_order``, ``fetch_key``.

    :returns: the key bytes.
    """
    order = helpers.order_key(conn)
    order = helpers.wait_for_order(conn, order, timeout=HTTP_TIMEOUT)
    key = helpers.fetch_key(conn, order)
    if len(key) != KEY_LENGTH:
        raise ExerciseError(f"fetch_key gave {len(key)} bytes, not "
                            f"{KEY_LENGTH}")
    return key


class RequestLog:
    """Every HTTP request an openstacksdk connection sends, with times.

    Wraps ``send`` of the transport adapters of the ``requests`` session
    inside the connection's keystoneauth session, so what is counted went
    out on the wire (or failed trying).
    """

    def __init__(self, conn):
        self.entries = []
        adapters = conn.session.session.adapters.values()
        # keystoneauth mounts one adapter for both http:// and https://.
        for adapter in {id(a): a for a in adapters}.values():
            adapter.send = self._wrap(adapter.send)

    def _wrap(self, send):
        def counted_send(request, *args, **kwargs):
            sent = time.monotonic()
            status = None
            try:
                response = send(request, *args, **kwargs)
                status = response.status_code
                return response
            finally:
                self.entries.append((sent, time.monotonic(), request.method,
                                     request.url, status))
        return counted_send

    def mark(self):
        """A position to count from: ``len(self.entries)``."""
        return len(self.entries)

    def since(self, mark):
        return self.entries[mark:]
