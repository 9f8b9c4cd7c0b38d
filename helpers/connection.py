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
from openstack import exceptions as sdk

from helpers import embedded, processes
from helpers.errors import ConnectError, LabError
from helpers.explain import CloudFacts, explained, note_cloud_server

LOG = logging.getLogger(__name__)


class _DiscoveryWarning(logging.Filter):
    """Keep keystoneauth's version-discovery warnings out of learners' view.

    When Keystone or Barbican cannot be reached (down, wrong scheme,
    untrusted certificate), keystoneauth warns that version discovery
    failed before the real error; the learner would read two messages, the
    first one misleading.  The real error is explained anyway, so these
    warnings are passed on at debug level under this module's name.
    """

    PREFIXES = ("Failed to discover available identity versions",
                "Failed to contact the endpoint at")

    def filter(self, record):
        if record.getMessage().startswith(self.PREFIXES):
            LOG.debug("keystoneauth: %s", record.getMessage())
            return False
        return True


for _name in ("keystoneauth.identity.generic.base", "keystoneauth.discover"):
    logging.getLogger(_name).addFilter(_DiscoveryWarning())


def cloud_configured():
    """True when the environment names a cloud (clouds.yaml or openrc).

    :raises ConnectError: login settings without a place to log in: an
        openrc half loaded must not quietly become the embedded server.
    """
    if os.environ.get("OS_CLOUD") or os.environ.get("OS_AUTH_URL"):
        return True
    stray = [name for name in LOGIN_VARIABLES if os.environ.get(name)]
    if stray:
        raise ConnectError(
            f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} set "
            f"but OS_AUTH_URL is not, so there is no cloud to log in to.",
            "Load the whole openrc (source it again), or unset these to use "
            "the embedded Barbican.")
    return False


# An openrc's login settings; any of them without OS_AUTH_URL is a mistake.
LOGIN_VARIABLES = ("OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME",
                   "OS_PROJECT_ID", "OS_USER_ID", "OS_TOKEN",
                   "OS_APPLICATION_CREDENTIAL_ID")

# Seconds before a request to a cloud that does not answer gives up; a
# stopped server would otherwise hang the notebook for ever.
API_TIMEOUT = 30


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
    processes.bypass_proxy_for_loopback()
    # Nothing from clouds.yaml or OS_* may leak into the embedded connection.
    return openstack.connect(
        load_yaml_config=False, load_envvars=False,
        auth_type="none", auth={"endpoint": endpoint},
        key_manager_endpoint_override=f"{endpoint}/v1",
        app_name="barbican-lab", api_timeout=API_TIMEOUT)


def tls_verified(conn):
    """False when ``verify: false``, ``insecure: true`` or ``OS_INSECURE``.

    openstacksdk keeps ``insecure`` beside ``verify``; either one turns
    certificate checks off, so both are looked at.
    """
    config = conn.config.config
    return bool(config.get("verify", True)) and not config.get("insecure")


def _cloud_connection(cloud):
    with explained("read the cloud configuration", "the cloud"):
        conn = openstack.connect(
            cloud=cloud, app_name="barbican-lab",
            api_timeout=float(os.environ.get("OS_API_TIMEOUT",
                                             API_TIMEOUT)))
    if not tls_verified(conn):
        # Never silent: an unverified connection is said out loud each time.
        LOG.warning("TLS verification is OFF for %s: anyone on the network "
                    "path could read your keys. Remove the insecure setting "
                    "and point OS_CACERT (or cacert:) at the lab's CA "
                    "bundle.", _label(conn))
    return conn


def cloud_facts(conn):
    """What messages about ``conn``'s cloud may name: entry, user, region."""
    auth = conn.config.config.get("auth", {})
    return CloudFacts(
        entry=None if conn.config.name == "envvars" else conn.config.name,
        username=auth.get("username"),
        project=auth.get("project_name"),
        region=conn.config.get_region_name("key-manager"))


def _key_manager_regions(conn):
    """Regions whose catalog lists a key-manager endpoint (may be empty)."""
    try:
        access = conn.session.auth.get_access(conn.session)
        endpoints = access.service_catalog.get_endpoints(
            service_type="key-manager")
    except (ksa.ClientException, sdk.SDKException, AttributeError):
        return []
    return sorted({e.get("region_id") or e.get("region")
                   for found in endpoints.values() for e in found} - {None})


def _catalog_endpoint(conn):
    """Barbican's URL as the catalog lists it (logs in; no discovery)."""
    return conn.session.get_endpoint(
        service_type="key-manager",
        interface=conn.config.get_interface("key-manager"),
        region_name=conn.config.get_region_name("key-manager"))


def _key_manager_endpoint(conn, listed):
    """The versioned endpoint, found by openstacksdk's version discovery."""
    try:
        return conn.key_manager.get_endpoint()
    except sdk.NotSupported:
        if not listed:
            raise
        # Discovery only says "no supported versions" when Barbican does
        # not answer; asking the listed URL once more, plainly, raises the
        # real failure (refused, TLS, ...) for explained() to name.
        conn.session.get(listed, authenticated=False, raise_exc=False)
        raise


def _probe(conn, where, cloud=None):
    """Make one cheap authenticated call so problems surface now."""
    listed = None
    if cloud is not None:
        note_cloud_server(conn.config.config.get("auth", {}).get("auth_url"),
                          "Keystone")
    try:
        with explained("connect to Barbican", where, cloud=cloud):
            if cloud is not None:
                listed = _catalog_endpoint(conn)
                note_cloud_server(listed, "Barbican")
            endpoint = _key_manager_endpoint(conn, listed)
            next(iter(conn.key_manager.orders(limit=1)), None)
    except ConnectError as error:
        if cloud is not None and isinstance(
                error.__cause__, (ksa.EndpointNotFound,
                                  sdk.ServiceDisabledException)):
            regions = _key_manager_regions(conn)
            error.hint += (
                f" Regions with Barbican on this cloud: "
                f"{', '.join(regions)}." if regions else
                " This cloud lists Barbican in no region: tell your "
                "instructor.")
        raise
    return endpoint


def connect(cloud=None, state_dir=None, port=None, embedded_only=False):
    """Connect to Barbican: the configured cloud, or the embedded server.

    Introduced in ``notebooks/01-order-an-aes-key.ipynb``.

    :param cloud: a ``clouds.yaml`` entry name; overrides ``OS_CLOUD``.
    :param state_dir: the embedded server's state folder, if not default.
    :param port: the embedded server's port, if it must start; by default
        the one it used last, or 9311.
    :param embedded_only: use the embedded server even when a cloud is
        configured (a lesson that pauses the server's own worker).
    :returns: an openstacksdk connection that has answered once.
    :raises LabError: nothing usable answers; the message says why.
    """
    if not embedded_only and (cloud or cloud_configured()):
        with _binder_advice():
            conn = _cloud_connection(cloud)
            _probe(conn, describe(conn), cloud_facts(conn))
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
    auth = config.get("auth", {})
    region = conn.config.get_region_name("key-manager") or "default region"
    account = ""
    if auth.get("username"):
        account = f", user {auth['username']!r}"
        if auth.get("project_name"):
            account += f" in project {auth['project_name']!r}"
    text = (f"{_label(conn)} (Keystone {auth.get('auth_url', '?')}, "
            f"{region}{account})")
    if not tls_verified(conn):
        text += " with TLS verification OFF"
    return text


def _label(conn):
    name = conn.config.name
    return ("the cloud in your OS_* variables" if name == "envvars"
            else f"cloud {name!r}")


__all__ = ["connect", "describe", "cloud_configured", "ConnectError",
           "LabError"]
