"""Turn what openstacksdk and keystoneauth raise into :class:`LabError`.

One place decides how every failure of a Barbican or Keystone call reads
to a learner, so the notebook and the command line say the same thing.
"""

import contextlib
import json
import logging
import re

from keystoneauth1 import exceptions as ksa
from openstack import exceptions as sdk

from helpers.errors import (AuthError, ConnectError, LabError, NotFound,
                            Refused)

LOG = logging.getLogger(__name__)

MAX_REASON = 200


# jsonschema's messages read "'<value>' is too long", "'<value>' is not ...".
_LONG_QUOTED = re.compile(r"'([^']{41,})'(?= is )")


def shorten(text, limit=MAX_REASON):
    """Clip ``text`` so a long echoed value cannot flood a message.

    Barbican repeats a rejected value in full ("'xxxx…' is too long"); that
    value is cut to its start and length so the reason after it survives.
    """
    text = " ".join(str(text).split())
    text = _LONG_QUOTED.sub(
        lambda m: f"'{m.group(1)[:20]}…' ({len(m.group(1))} characters)",
        text)
    if len(text) <= limit:
        return text
    return text[:limit - 1] + "…"


def barbican_reason(exc):
    """Barbican's own words for a refused request, if it sent any.

    openstacksdk keeps only the HTTP reason phrase ("Bad Request");
    Barbican's JSON body has the useful ``description``.
    """
    response = getattr(exc, "response", None)
    if response is None:
        return None
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        return shorten(response.text) if response.text else None
    if isinstance(body, dict):
        for key in ("description", "title", "message"):
            if body.get(key):
                return shorten(body[key])
        if isinstance(body.get("error"), dict):
            return shorten(body["error"].get("message", ""))
    return None


def _status(exc):
    return getattr(exc, "status_code", None) or getattr(exc, "http_status",
                                                        None)


def explain(exc, action, target="Barbican", hint=None):
    """Return the :class:`LabError` that tells a learner what ``exc`` means.

    :param exc: what openstacksdk or keystoneauth raised.
    :param action: what was being done, as a phrase ("order a key").
    :param target: where the request went, for messages.
    :param hint: what to try when Barbican refuses the request (HTTP 4xx).
    """
    if isinstance(exc, LabError):
        return exc
    if isinstance(exc, ksa.SSLError):
        return ConnectError(
            f"Could not {action}: the TLS certificate of {target} is not "
            f"trusted by this machine.",
            "Point OS_CACERT (or `cacert:` in clouds.yaml) at the lab's CA "
            "bundle file; do not switch verification off.")
    if isinstance(exc, (ksa.ConnectFailure, ksa.ConnectTimeout,
                        ksa.UnknownConnectionError)):
        text = str(exc)
        if "RemoteDisconnected" in text or "Connection aborted" in text:
            return ConnectError(
                f"Could not {action}: {target} closed the connection "
                f"without answering.",
                "If the lab serves HTTPS, the URL must start with https://.")
        return ConnectError(
            f"Could not {action}: nothing answers at {target}.",
            "Check that the server runs and the URL is right (embedded: "
            "python -m helpers server start).")
    if isinstance(exc, ksa.EndpointNotFound):
        return ConnectError(
            f"Could not {action}: the cloud's catalog lists no key-manager "
            f"(Barbican) endpoint here ({shorten(exc)}).",
            "Check OS_REGION_NAME (or region_name in clouds.yaml) with your "
            "instructor.")
    status = _status(exc)
    if isinstance(exc, ksa.Unauthorized) or status == 401:
        return AuthError(
            f"Could not {action}: the cloud refused the credentials "
            f"(HTTP 401).",
            "Check the user name, password and project in your openrc or "
            "clouds.yaml; ask your instructor if they were reset.")
    if status == 403:
        reason = barbican_reason(exc) or "Forbidden"
        return AuthError(
            f"Could not {action}: your role on this project does not allow "
            f"it (HTTP 403: {reason}).",
            "The exercise needs the 'member' role; ask your instructor.")
    if status == 404:
        return NotFound(
            f"Could not {action}: {target} knows no such object (HTTP 404).",
            "Check the href; it may belong to another project or have been "
            "deleted.")
    if status is not None and 400 <= status < 500:
        reason = barbican_reason(exc) or "Bad Request"
        return Refused(
            f"Could not {action}: Barbican refused it (HTTP {status}: "
            f"{reason}).",
            hint or "Change the value it names and try again.",
            status_code=status, reason=reason)
    if status is not None and status >= 500:
        reason = barbican_reason(exc) or "server error"
        return LabError(
            f"Could not {action}: {target} failed (HTTP {status}: {reason}).",
            "Try again; if it repeats, the server's log says why "
            "(embedded: python -m helpers server status shows where).")
    if isinstance(exc, sdk.ConfigException):
        return ConnectError(
            f"Could not {action}: the cloud configuration is not usable "
            f"({shorten(exc)}).",
            "Check OS_CLOUD and clouds.yaml, or the OS_* variables of your "
            "openrc.")
    if isinstance(exc, (sdk.SDKException, ksa.ClientException)):
        return LabError(f"Could not {action}: {shorten(exc)}.",
                        "Check the connection settings and try again.")
    return None


@contextlib.contextmanager
def explained(action, target="Barbican", hint=None):
    """Re-raise SDK and keystoneauth failures inside as :class:`LabError`."""
    try:
        yield
    except LabError:
        raise
    except Exception as exc:
        error = explain(exc, action, target, hint)
        if error is None:
            raise
        LOG.debug("%s failed: %r", action, exc)
        raise error from exc
