"""Where to connect: the lab's cloud when one is configured, else our own.

A configured cloud is ``OS_CLOUD`` (an entry of ``clouds.yaml``) or an
openrc's ``OS_AUTH_URL`` and friends.  Without one, the embedded Barbican
is used, and started when it is not running.
"""

import contextlib
import logging
import os

import openstack
from keystoneauth1 import exceptions as ksa

from helpers import embedded
from helpers.errors import ConnectError, LabError
from helpers.explain import explained

LOG = logging.getLogger(__name__)


def cloud_configured():
    """True when the environment names a cloud (clouds.yaml or openrc)."""
    return bool(os.environ.get("OS_CLOUD") or os.environ.get("OS_AUTH_URL"))


# BinderHub (mybinder.org among others) sets these in every session it
# launches; a laptop or a classroom JupyterHub sets none of them.
BINDER_VARIABLES = ("BINDER_LAUNCH_HOST", "BINDER_REPO_URL", "BINDER_REF_URL",
                    "BINDER_REQUEST")
BINDER_ADVICE = (
    "This session runs on Binder, which lets it open outgoing connections "
    "on a few ports only: a lab cloud is usually unreachable from here. "
    "Unset OS_CLOUD and OS_AUTH_URL to use the embedded Barbican instead "
    "(in a notebook: %env OS_CLOUD= and %env OS_AUTH_URL=, then connect "
    "again).")


def on_binder():
    """True inside a session that a BinderHub launched."""
    return any(os.environ.get(name) for name in BINDER_VARIABLES)


@contextlib.contextmanager
def _binder_advice():
    """On Binder, say at once that a cloud is likely out of reach, and say
    it again with the error if it is."""
    if not on_binder():
        yield
        return
    LOG.warning(BINDER_ADVICE)
    try:
        yield
    except ConnectError as error:
        if isinstance(error.__cause__, (ksa.ConnectFailure,
                                        ksa.ConnectTimeout)):
            # Out of reach: the usual checks of the URL would mislead.
            error.hint = BINDER_ADVICE
        else:
            error.hint = f"{BINDER_ADVICE} {error.hint}".strip()
        raise


def _embedded_connection(endpoint):
    # Nothing from clouds.yaml or OS_* may leak into the embedded connection.
    return openstack.connect(
        load_yaml_config=False, load_envvars=False,
        auth_type="none", auth={"endpoint": endpoint},
        key_manager_endpoint_override=f"{endpoint}/v1",
        app_name="barbican-lab")


def _cloud_connection(cloud):
    with explained("read the cloud configuration", "the cloud"):
        conn = openstack.connect(cloud=cloud, app_name="barbican-lab")
    if not conn.config.config.get("verify", True):
        # Never silent: an unverified connection is said out loud each time.
        LOG.warning("TLS verification is OFF for cloud %r: anyone on the "
                    "network path could read your keys.", conn.config.name)
    return conn


def _probe(conn, where):
    """Make one cheap authenticated call so problems surface now."""
    with explained("reach Barbican", where):
        endpoint = conn.key_manager.get_endpoint()
        next(iter(conn.key_manager.orders(limit=1)), None)
    return endpoint


def connect(cloud=None, state_dir=None, port=None):
    """Connect to Barbican: the configured cloud, or the embedded server.

    Introduced in ``notebooks/01-order-an-aes-key.ipynb``.

    :param cloud: a ``clouds.yaml`` entry name; overrides ``OS_CLOUD``.
    :param state_dir: the embedded server's state folder, if not default.
    :param port: the embedded server's port, if not 9311.
    :returns: an openstacksdk connection that has answered once.
    :raises LabError: nothing usable answers; the message says why.
    """
    if cloud or cloud_configured():
        with _binder_advice():
            conn = _cloud_connection(cloud)
            _probe(conn, f"the cloud {describe(conn)}")
    else:
        server = embedded.ensure_running(state_dir, port)
        conn = _embedded_connection(server.endpoint)
        _probe(conn, f"the embedded Barbican at {server.endpoint}")
    LOG.info("connected to %s", describe(conn))
    return conn


def describe(conn):
    """Say in one line which Barbican ``conn`` talks to."""
    config = conn.config.config
    if config.get("auth_type") == "none":
        endpoint = config.get("auth", {}).get("endpoint", "?")
        return f"embedded Barbican {embedded.barbican_version()} at {endpoint}"
    name = conn.config.name
    auth_url = config.get("auth", {}).get("auth_url", "?")
    label = ("the cloud in your OS_* variables" if name == "envvars"
             else f"cloud {name!r}")
    region = conn.config.get_region_name("key-manager") or "default region"
    text = f"{label} (Keystone {auth_url}, {region})"
    if not config.get("verify", True):
        text += " with TLS verification OFF"
    return text


__all__ = ["connect", "describe", "cloud_configured", "ConnectError",
           "LabError"]
