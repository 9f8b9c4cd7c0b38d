"""Shared fixtures: a real embedded Barbican on a free port, per session.

The server runs from a temporary state folder, so tests never touch a
learner's own keys, and it is stopped by its own pid at the end.
"""

import os
import random
import socket
import sys
from pathlib import Path

import pytest

import helpers
from helpers import embedded

ROOT = Path(__file__).resolve().parent.parent
_ports = random.Random()


def free_port():
    """A port on 127.0.0.1 that nothing listens on right now.

    Chosen below the kernel's ephemeral range (32768 and up here), where
    the system also picks the local ports of outgoing connections: a port
    from there can be taken by any client between a server's stop and its
    restart, and the restart then fails for no fault of the code.
    """
    for _ in range(200):
        port = _ports.randrange(20000, 32000)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found between 20000 and 32000")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The test session's embedded Barbican: a :class:`ServerStatus`."""
    state_dir = tmp_path_factory.mktemp("barbican-state")
    status = embedded.start(state_dir, free_port())
    yield status
    embedded.stop(state_dir)


@pytest.fixture(scope="session")
def conn(server):
    """An openstacksdk connection to the session's server, via connect()."""
    return helpers.connect(state_dir=server.state_dir)


@pytest.fixture
def cleanup(conn):
    """Register orders and secrets to delete when the test ends."""
    created = []
    yield created
    for thing in reversed(created):
        try:
            if "/orders/" in str(thing):
                helpers.delete_order(conn, thing)
            else:
                helpers.delete_secret(conn, thing)
        except helpers.NotFound:
            pass


@pytest.fixture
def cli_env(server):
    """Environment for child processes: this server, no cloud settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env[embedded.STATE_ENV] = str(server.state_dir)
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    return env


def require(found, what, how):
    """Skip when a prerequisite is missing, except in CI, where it fails.

    :param found: whether the prerequisite is there.
    :param what: what is missing, for the message.
    :param how: how to install it.
    """
    if found:
        return
    message = f"{what} is missing; install it with: {how}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
