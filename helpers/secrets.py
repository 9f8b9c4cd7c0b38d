"""Secrets: the key an ACTIVE order made, its metadata and its bytes.

Introduced in ``notebooks/01-order-an-aes-key.ipynb``.
"""

import logging
import os
from pathlib import Path

from openstack import exceptions as sdk_exceptions
from openstack.key_manager.v1 import secret as sdk_secret

from helpers.cleanup import CREATED
from helpers.errors import KeyFileExists, LabError, NotReady
from helpers.explain import explained
from helpers.hrefs import uuid_of
from helpers.orders import ACTIVE, PAYLOAD_CONTENT_TYPE, get_order

LOG = logging.getLogger(__name__)

DEFAULT_KEY_FILE = "ordered_key"


def get_secret(conn, secret):
    """Read a secret's metadata (name, algorithm, bit length, ...).

    CLI: ``openstack secret get SECRET_HREF``

    :param secret: the secret as href, UUID or SDK object.
    :returns: an openstacksdk ``Secret``.
    """
    uuid = uuid_of(secret, "secret")
    with explained("read the secret"):
        # The metadata alone, checked: the SDK's get_secret also downloads
        # the payload and, on a 403 or 404, returns a Secret of Nones.
        response = conn.key_manager.get(
            f"secrets/{uuid}", headers={"Accept": "application/json"})
        sdk_exceptions.raise_from_response(response)
        return sdk_secret.Secret.existing(**response.json())


def get_payload(conn, secret):
    """Download a secret's payload as ``application/octet-stream`` bytes.

    CLI: ``openstack secret get --file ordered_key --payload_content_type
    'application/octet-stream' SECRET_HREF``

    :param secret: the secret as href, UUID or SDK object.
    :returns: the key as bytes.
    """
    uuid = uuid_of(secret, "secret")
    with explained("download the key"):
        # One GET of the payload itself.  The SDK's Secret.fetch reads the
        # metadata first (a second request) and checks neither answer, so
        # an unknown secret came back as Barbican's 404 body in bytes.
        response = conn.key_manager.get(
            f"secrets/{uuid}/payload",
            headers={"Accept": PAYLOAD_CONTENT_TYPE})
        sdk_exceptions.raise_from_response(response)
    return response.content


def secret_of(conn, order):
    """Return the secret href of an ACTIVE order.

    :raises NotReady: the order is not ACTIVE yet, so it has no secret.
    """
    if getattr(order, "status", None) == ACTIVE and getattr(
            order, "secret_ref", None):
        # ACTIVE is final: an order read as ACTIVE (as wait_for_order
        # returns it) keeps its secret, so Barbican is not asked again.
        return order.secret_ref
    current = get_order(conn, order)
    if current.status != ACTIVE or not current.secret_ref:
        raise NotReady(
            f"Order {current.order_ref} is {current.status}: it has no key "
            f"to fetch yet.",
            "Wait until the order is ACTIVE, then fetch the key.")
    return current.secret_ref


def fetch_key(conn, order):
    """Download the key an ACTIVE order made, as bytes.

    :param order: the order as href, UUID or SDK object.
    :returns: the key bytes (32 of them for AES-256).
    :raises NotReady: the order is not ACTIVE.
    """
    return get_payload(conn, secret_of(conn, order))


def save_key(data, path=DEFAULT_KEY_FILE, overwrite=False):
    """Save key bytes to a file only its owner can read (mode 0600).

    The file appears whole or not at all: the bytes go to a private
    temporary file first, which then replaces ``path``.  Saving the same
    bytes again is harmless.

    :param data: the key bytes.
    :param path: where to save them; ``ordered_key`` as in the exercise.
    :param overwrite: replace a file that holds different bytes.
    :returns: the file's path.
    :raises KeyFileExists: ``path`` holds something else and ``overwrite``
        is false.
    """
    path = Path(path)
    data = bytes(data)
    if path.is_dir():
        raise KeyFileExists(
            f"{path} is a folder, so the key cannot be saved under that "
            f"name.", "Choose another file name for the key.")
    if path.exists() and not overwrite:
        # The size first: a large file in the key's place is not read.
        if (path.is_file() and path.stat().st_size == len(data)
                and path.read_bytes() == data):
            os.chmod(path, 0o600)
            return path
        raise KeyFileExists(
            f"{path} already exists and holds something else "
            f"({path.stat().st_size} bytes); it was left as it is.",
            f"If you no longer need it, delete it (rm {path}) and fetch "
            f"again, or save the key under another name "
            f"(in code: save_key(key, path, overwrite=True) replaces it).")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LabError(f"Could not save the key to {path}: {exc.strerror}.",
                       "Check that the folder exists and you may write "
                       "there.") from exc
    CREATED.add_file(path, data)
    LOG.info("saved %d key bytes to %s", len(data), path)
    return path


def delete_secret(conn, secret):
    """Delete a secret and its key from Barbican.

    CLI: ``openstack secret delete SECRET_HREF``
    """
    uuid = uuid_of(secret, "secret")
    with explained("delete the secret"):
        conn.key_manager.delete_secret(uuid, ignore_missing=False)
