"""Tables read like the openstack CLI; built from API body samples."""

from openstack.key_manager.v1 import secret as sdk_secret

from helpers.orders import Order
from helpers.tables import (hexdump_table, order_table, secret_table,
                            ORDER_FIELDS)

HREF = "http://127.0.0.1:9311/v1"
ORDER_BODY = {
    "order_ref": f"{HREF}/orders/8e224827-b98a-4370-b35c-2d34457ecd11",
    "secret_ref": f"{HREF}/secrets/a28e2358-dd4e-4442-b8fe-928ebe8ad69a",
    "created": "2026-12-04T16:09:00.986765",
    "status": "ACTIVE",
    "type": "key",
    "meta": {"name": "Order for an AES key", "algorithm": "aes",
             "bit_length": 256, "mode": "cbc"},
}


def as_dict(table):
    return dict(zip(table["Field"], table["Value"]))


def test_order_table_has_the_cli_fields_in_the_cli_order():
    table = order_table(Order.existing(**ORDER_BODY))
    assert tuple(table.columns) == ("Field", "Value")
    assert tuple(table["Field"]) == ORDER_FIELDS
    assert as_dict(table) == {
        "Order href": ORDER_BODY["order_ref"],
        "Type": "Key",
        "Container href": "N/A",
        "Secret href": ORDER_BODY["secret_ref"],
        "Created": "2026-12-04T16:09:00.986765+00:00",
        "Status": "ACTIVE",
        "Error code": "None",
        "Error message": "None",
    }


def test_failed_order_shows_barbicans_code_and_reason():
    body = dict(ORDER_BODY, status="ERROR", secret_ref=None,
                error_status_code="400",
                error_reason="Secret generate supported plugin not found.")
    values = as_dict(order_table(Order.existing(**body)))
    assert values["Secret href"] == "None"
    assert values["Error code"] == "400"
    assert values["Error message"] == (
        "Secret generate supported plugin not found.")


def test_secret_table_matches_openstack_secret_get():
    secret = sdk_secret.Secret.existing(
        secret_ref=f"{HREF}/secrets/a28e2358-dd4e-4442-b8fe-928ebe8ad69a",
        name="Order for an AES key", created="2026-12-04T16:09:01.010512",
        status="ACTIVE",
        content_types={"default": "application/octet-stream"},
        algorithm="aes", bit_length=256, secret_type="symmetric",
        mode="cbc", expiration=None)
    assert as_dict(secret_table(secret)) == {
        "Secret href": f"{HREF}/secrets/a28e2358-dd4e-4442-b8fe-928ebe8ad69a",
        "Name": "Order for an AES key",
        "Created": "2026-12-04T16:09:01.010512+00:00",
        "Status": "ACTIVE",
        "Content types": "{'default': 'application/octet-stream'}",
        "Algorithm": "aes",
        "Bit length": "256",
        "Secret type": "symmetric",
        "Mode": "cbc",
        "Expiration": "None",
    }


def test_hexdump_table_has_offset_hex_and_ascii():
    table = hexdump_table(b"0123456789abcdefXYZ")
    assert list(table.columns) == ["Offset", "Hex", "ASCII"]
    assert list(table["Offset"]) == ["00000000", "00000010"]
    assert table["Hex"][0] == ("30 31 32 33 34 35 36 37  "
                               "38 39 61 62 63 64 65 66")
    assert table["ASCII"][1] == "XYZ"
