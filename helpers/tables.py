"""pandas tables that read like the ``openstack`` CLI's output.

Field names and value forms match what ``openstack secret order get`` and
``openstack secret get`` print, so a learner can hold the notebook's table
next to the terminal's and see the same thing.
"""

from datetime import datetime, timezone

import pandas as pd

from helpers.hexdump import hexdump_rows

ORDER_FIELDS = ("Order href", "Type", "Container href", "Secret href",
                "Created", "Status", "Error code", "Error message")
SECRET_FIELDS = ("Secret href", "Name", "Created", "Status", "Content types",
                 "Algorithm", "Bit length", "Secret type", "Mode",
                 "Expiration")
HEXDUMP_COLUMNS = ("Offset", "Hex", "ASCII")


def cli_time(value):
    """Format a Barbican timestamp as the CLI does: ISO 8601 in UTC."""
    if not value:
        return "None"
    stamp = datetime.fromisoformat(str(value))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.isoformat()


def _field_table(fields, values):
    return pd.DataFrame({"Field": list(fields),
                         "Value": [str(v) for v in values]})


def order_table(order):
    """The order as Field/Value rows, as ``openstack secret order get``.

    :param order: an :class:`helpers.orders.Order`.
    """
    return _field_table(ORDER_FIELDS, (
        order.order_ref,
        "Key",
        "N/A",
        order.secret_ref,
        cli_time(order.created_at),
        order.status,
        getattr(order, "error_status_code", None),
        getattr(order, "error_reason", None),
    ))


def secret_table(secret):
    """The secret's metadata as Field/Value rows, as ``openstack secret get``.

    :param secret: an openstacksdk ``Secret``; its payload is not shown.
    """
    return _field_table(SECRET_FIELDS, (
        secret.secret_ref,
        secret.name,
        cli_time(secret.created_at),
        secret.status,
        secret.content_types,
        secret.algorithm,
        secret.bit_length,
        secret.secret_type,
        secret.mode,
        cli_time(secret.expires_at),
    ))


def hexdump_table(data):
    """The key as a table: one row per 16 bytes, with offset, hex and ASCII."""
    return pd.DataFrame(hexdump_rows(data), columns=list(HEXDUMP_COLUMNS))
