"""The exercise through the helpers, against the session's real Barbican."""

import os
import sqlite3
import stat

import pytest

import helpers
from helpers.errors import (InvalidInput, KeyFileExists, NotFound, NotReady,
                            OrderFailed, OrderTimeout, Refused,
                            WaitCancelled)


@pytest.mark.parametrize("bits", [128, 192, 256])
def test_order_wait_fetch(conn, cleanup, bits):
    order = helpers.order_key(conn, bit_length=bits)
    cleanup.append(order.order_ref)
    assert order.order_ref.startswith(conn.key_manager.get_endpoint()
                                      .rstrip("/") + "/orders/")

    seen = []
    active = helpers.wait_for_order(
        conn, order, progress=lambda o, t: seen.append(o.status))
    cleanup.append(active.secret_ref)
    assert active.status == "ACTIVE"
    assert seen[-1] == "ACTIVE"

    key = helpers.fetch_key(conn, active)
    assert len(key) == bits // 8
    secret = helpers.get_secret(conn, active.secret_ref)
    assert (secret.algorithm, secret.bit_length, secret.mode) == (
        "aes", bits, "cbc")


def test_orders_and_secrets_accepted_as_href_uuid_or_object(conn, cleanup):
    order = helpers.wait_for_order(conn, helpers.order_key(conn))
    cleanup += [order.order_ref, order.secret_ref]
    uuid = order.order_ref.rsplit("/", 1)[1]
    for form in (order, order.order_ref, uuid):
        assert helpers.get_order(conn, form).order_ref == order.order_ref
    key = helpers.fetch_key(conn, order)
    secret_uuid = order.secret_ref.rsplit("/", 1)[1]
    secret = helpers.get_secret(conn, order.secret_ref)
    for form in (secret, order.secret_ref, secret_uuid):
        assert helpers.get_payload(conn, form) == key


@pytest.mark.parametrize("bits, reason", [
    (100, "Provided field value is not supported"),
    (0, "0 is less than the minimum of 1"),
])
def test_bit_length_refused_at_once_carries_barbicans_reason(conn, bits,
                                                             reason):
    with pytest.raises(Refused) as caught:
        helpers.order_key(conn, bit_length=bits)
    assert caught.value.status_code == 400
    assert reason in str(caught.value)
    assert "bit length" in caught.value.hint


@pytest.mark.parametrize("meta, code, reason", [
    ({"algorithm": "rot13"}, "400", "plugin not found"),
    ({"bit_length": 200}, "500", "Process TypeOrder failure"),
])
def test_order_that_ends_in_error_carries_barbicans_code_and_reason(
        conn, cleanup, meta, code, reason):
    order = helpers.order_key(conn, **meta)
    cleanup.append(order.order_ref)
    with pytest.raises(OrderFailed) as caught:
        helpers.wait_for_order(conn, order, timeout=10)
    error = caught.value
    assert error.error_code == code
    assert reason in error.reason
    assert f"error code {code}" in str(error)
    assert order.order_ref in str(error)
    with pytest.raises(NotReady, match="ERROR"):
        helpers.fetch_key(conn, order)


def test_300_character_name_is_refused_without_echoing_it(conn):
    with pytest.raises(Refused) as caught:
        helpers.order_key(conn, name="x" * 300)
    text = str(caught.value)
    assert "is too long" in text and "'name'" in text
    assert "(300 characters)" in text
    assert "x" * 40 not in text


def test_mode_is_recorded_not_checked_by_barbican(conn, cleanup):
    order = helpers.wait_for_order(conn, helpers.order_key(conn, mode="nope"))
    cleanup += [order.order_ref, order.secret_ref]
    assert helpers.get_secret(conn, order.secret_ref).mode == "nope"


@pytest.mark.parametrize("bits", ["abc", None, True, 2.5j])
def test_bit_length_that_is_no_number_is_caught_before_barbican(conn, bits):
    with pytest.raises(InvalidInput, match="not a whole number"):
        helpers.order_key(conn, bit_length=bits)


@pytest.mark.parametrize("ref", [
    "http://127.0.0.1:9311/v1/orders/00000000-0000-4000-8000-000000000000",
    "00000000-0000-4000-8000-000000000000",
])
def test_unknown_order_is_not_found(conn, ref):
    with pytest.raises(NotFound, match="HTTP 404"):
        helpers.get_order(conn, ref)


@pytest.mark.parametrize("ref", ["", "hello", "http://x/v1/secrets/abc"])
def test_garbage_is_no_order(conn, ref):
    with pytest.raises(InvalidInput, match="not an order href or UUID"):
        helpers.get_order(conn, ref)


def _force_pending(server, order):
    # The synchronous embedded server finishes orders inside the POST, so a
    # PENDING order is made by resetting its row in the server's own
    # database: Barbican itself then reports it PENDING on every read.
    uuid = order.order_ref.rsplit("/", 1)[1]
    with sqlite3.connect(server.state_dir / "barbican.sqlite") as db:
        db.execute("UPDATE orders SET status = 'PENDING' WHERE id = ?",
                   (uuid,))


def test_wait_times_out_on_a_pending_order(conn, server, cleanup):
    order = helpers.order_key(conn)
    cleanup.append(order.order_ref)
    _force_pending(server, order)
    reads = []
    with pytest.raises(OrderTimeout) as caught:
        helpers.wait_for_order(conn, order.order_ref, timeout=1.5,
                               progress=lambda o, t: reads.append(t))
    assert "still PENDING after 1.5 s" in str(caught.value)
    assert "worker" in caught.value.hint
    # Immediate first read, then doubling pauses: 0, .1, .3, .7, 1.5.
    assert reads[0] < 0.5
    assert 4 <= len(reads) <= 6


def test_wait_can_be_cancelled(conn, server, cleanup):
    import threading
    order = helpers.order_key(conn)
    cleanup.append(order.order_ref)
    _force_pending(server, order)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(WaitCancelled, match="still PENDING"):
        helpers.wait_for_order(conn, order.order_ref, timeout=30,
                               cancel=cancel)


def test_save_key_is_private_and_never_clobbers(tmp_path):
    path = tmp_path / "ordered_key"
    old_umask = os.umask(0)
    try:
        helpers.save_key(b"k" * 32, path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"k" * 32

    helpers.save_key(b"k" * 32, path)  # the same bytes again: fine
    with pytest.raises(KeyFileExists, match="holds something else"):
        helpers.save_key(b"z" * 32, path)
    assert path.read_bytes() == b"k" * 32
    helpers.save_key(b"z" * 32, path, overwrite=True)
    assert path.read_bytes() == b"z" * 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ordered_key"]


def test_save_key_into_a_missing_folder_says_so(tmp_path):
    with pytest.raises(helpers.LabError, match="Could not save the key"):
        helpers.save_key(b"k", tmp_path / "nope" / "ordered_key")


def test_save_key_over_a_folder_says_so(tmp_path):
    (tmp_path / "ordered_key").mkdir()
    with pytest.raises(KeyFileExists, match="is a folder"):
        helpers.save_key(b"k" * 32, tmp_path / "ordered_key",
                         overwrite=True)


def test_clean_up_leaves_a_key_file_someone_changed(conn, tmp_path):
    from helpers.cleanup import Created
    created = Created()
    path = tmp_path / "ordered_key"
    path.write_bytes(b"a" * 32)
    created.add_file(path, b"a" * 32)
    path.write_bytes(b"b" * 32)  # e.g. the CLI saved another key there
    report = helpers.clean_up(conn, created=created)
    assert report == ["left ordered_key: it changed since this notebook "
                      "saved it"]
    assert path.read_bytes() == b"b" * 32


@pytest.mark.parametrize("read", [helpers.get_secret, helpers.get_payload])
def test_unknown_secret_is_not_found_never_a_blank_or_an_error_page(conn,
                                                                    read):
    with pytest.raises(NotFound, match="HTTP 404"):
        read(conn, "00000000-0000-4000-8000-000000000000")


def test_secret_metadata_only(conn, cleanup):
    order = helpers.wait_for_order(conn, helpers.order_key(conn))
    cleanup += [order.order_ref, order.secret_ref]
    secret = helpers.get_secret(conn, order.secret_ref)
    assert secret.secret_ref == order.secret_ref
    assert (secret.name, secret.status, secret.bit_length) == (
        "Order for an AES key", "ACTIVE", 256)
    assert secret.payload is None  # metadata only: no key in the object


def test_embedded_only_ignores_a_configured_cloud(server, monkeypatch):
    monkeypatch.setenv("OS_CLOUD", "a-cloud-that-is-not-there")
    with pytest.raises(helpers.LabError):
        helpers.connect(state_dir=server.state_dir)
    conn = helpers.connect(state_dir=server.state_dir, embedded_only=True)
    assert helpers.describe(conn).startswith("embedded Barbican")


def test_an_order_already_read_as_active_is_not_read_again(conn, cleanup):
    order = helpers.order_key(conn)
    cleanup += [order.order_ref, order.secret_ref]
    assert order.status == "ACTIVE"  # the synchronous server is that quick
    calls = []
    assert helpers.wait_for_order(
        conn, order, progress=lambda o, t: calls.append(t)) is order
    assert calls == [0.0]


def test_half_an_openrc_is_not_taken_for_no_cloud(server, monkeypatch):
    for name in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OS_USERNAME", "learner1")
    with pytest.raises(helpers.ConnectError) as caught:
        helpers.connect(state_dir=server.state_dir)
    assert str(caught.value) == (
        "OS_USERNAME is set but OS_AUTH_URL is not, so there is no cloud to "
        "log in to. Load the whole openrc (source it again), or unset these "
        "to use the embedded Barbican.")


def test_an_openrc_without_its_password_says_so(monkeypatch):
    from conftest import free_port
    monkeypatch.delenv("OS_CLOUD", raising=False)
    monkeypatch.delenv("OS_PASSWORD", raising=False)
    monkeypatch.setenv("OS_AUTH_URL", f"http://127.0.0.1:{free_port()}/v3")
    monkeypatch.setenv("OS_USERNAME", "learner1")
    monkeypatch.setenv("OS_PROJECT_NAME", "lab1")
    monkeypatch.setenv("OS_USER_DOMAIN_NAME", "Default")
    monkeypatch.setenv("OS_PROJECT_DOMAIN_NAME", "Default")
    with pytest.raises(helpers.AuthError, match="have no password"):
        helpers.connect()
