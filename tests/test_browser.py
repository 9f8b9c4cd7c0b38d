"""The exercise panel clicked through as a learner does, in a browser.

JupyterLab and Voilà serve a copy of the notebook; headless Chromium runs
it; every assertion reads the page, never the kernel.  tests/browser.py
holds the servers, the fixtures and the page helpers.
"""

import stat

import pytest
from playwright.sync_api import expect

from helpers import embedded

pytest_plugins = ["browser"]
pytestmark = pytest.mark.browser


def test_learner_orders_fetches_and_reads_the_key(notebook, lab):
    panel = notebook.panel
    shown = panel.order_and_fetch()

    expect(panel.badge).to_have_text("ACTIVE")
    order = panel.table("lab-order-table")
    assert order["Status"] == "ACTIVE"
    assert "/v1/orders/" in order["Order href"]
    assert "/v1/secrets/" in order["Secret href"]
    assert shown.rows == [16, 16] and shown.last_line == "00000020", \
        shown.text
    key_file = lab.root / "notebooks" / "ordered_key"
    assert shown.key == key_file.read_bytes()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    panel.assert_fixed_width("pre.lab-hexdump-text")
    panel.screenshot("panel-hexdump")

    panel.click("lab-check-work")
    expect(panel.info).to_have_text("All checks pass: well done.")
    expect(panel.root.locator(".lab-checks tr")).not_to_have_count(0)
    panel.click("lab-clean-up")
    expect(panel.info).to_contain_text("Clean-up: deleted secret")
    expect(panel.badge).to_have_text("NO ORDER")
    assert not key_file.exists()
    notebook.assert_nothing_escaped()


# What a learner may type or choose, and the words the panel must show.
REFUSED = [
    (None, "100", "Barbican refused it (HTTP 400"),
    (None, "abc", "Bit length 'abc' is not a whole number."),
    (None, "200", "ended in ERROR (Barbican's error code 500"),
    ("hmacsha256", "512", "Barbican could not make that key"),
]


def test_refused_orders_are_explained_in_the_panel(notebook):
    panel = notebook.panel
    for algorithm, bits, words in REFUSED:
        if algorithm:
            panel.choose_algorithm(algorithm)
            # The form switches to a length this algorithm accepts.
            expect(panel.bit_length).to_have_value("256")
        panel.type_bit_length(bits)
        panel.click("lab-submit")
        expect(panel.error).to_contain_text(words)
        expect(panel.error).to_contain_text("What to do:")
    expect(panel.badge).to_have_text("ERROR")
    expect(panel.button("lab-fetch")).to_be_disabled()
    notebook.assert_nothing_escaped()


def test_stopped_server_is_explained_in_the_panel(notebook, barbican):
    embedded.stop(barbican.state_dir)
    try:
        notebook.panel.click("lab-submit")
        expect(notebook.panel.error).to_contain_text(
            "Could not order a key: nothing answers at Barbican.")
        expect(notebook.panel.error).to_contain_text(
            "What to do: Check that the server runs")
        notebook.assert_nothing_escaped()
    finally:
        port = int(barbican.endpoint.rsplit(":", 1)[1])
        embedded.start(barbican.state_dir, port)


def test_learner_clicks_through_the_voila_app(page, voila):
    panel = voila.open(page)
    shown = panel.order_and_fetch()

    assert shown.rows == [16, 16] and shown.last_line == "00000020"
    assert shown.key == (voila.root / "notebooks" / "ordered_key"
                         ).read_bytes()
    # Voila styles <pre> in the page's proportional font unless told.
    panel.assert_fixed_width("pre.lab-hexdump-text")
    panel.assert_fixed_width("pre.lab-cli-text")
    panel.screenshot("voila-panel-hexdump")
    expect(page.locator("body")).not_to_contain_text("Traceback")
