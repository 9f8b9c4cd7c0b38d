"""Turn what openstacksdk and keystoneauth raise into :class:`LabError`.

One place decides how every failure of a Barbican or Keystone call reads
to a learner, so the notebook and the command line say the same thing.
"""

import contextlib
import json
import logging
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

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


@dataclass
class CloudFacts:
    """What :func:`helpers.connect` knows about the cloud, for messages.

    :param entry: the ``clouds.yaml`` entry, or ``None`` for an openrc.
    :param username: the user who logs in.
    :param project: the project they work in.
    :param region: the region asked for.
    """

    entry: str | None = None
    username: str | None = None
    project: str | None = None
    region: str | None = None


# Each setting as an openrc exports it and as clouds.yaml spells it.
_SETTINGS = {
    "auth_url": ("OS_AUTH_URL", "auth_url"),
    "username": ("OS_USERNAME", "username"),
    "password": ("OS_PASSWORD", "password"),
    "project": ("OS_PROJECT_NAME", "project_name"),
    "region": ("OS_REGION_NAME", "region_name"),
    "cacert": ("OS_CACERT", "cacert"),
}


def _and(words):
    return words[0] if len(words) == 1 else (
        ", ".join(words[:-1]) + " and " + words[-1])


def settings(cloud, *names, place=True):
    """Name settings the way the learner wrote them: openrc or clouds.yaml.

    :param cloud: :class:`CloudFacts`, or ``None`` when unknown (both forms
        are named then).
    :param names: keys of ``_SETTINGS``.
    :param place: say where they are ("in your openrc"); without it, only
        the names, for a second mention in the same sentence.
    """
    env = _and([_SETTINGS[n][0] for n in names])
    yaml = _and([_SETTINGS[n][1] for n in names])
    if cloud is None:
        return (f"{env} in your openrc ({yaml} in clouds.yaml)" if place
                else f"{env} ({yaml})")
    if cloud.entry is None:
        return f"{env} in your openrc" if place else env
    return (f"{yaml} in the clouds.yaml entry {cloud.entry!r}" if place
            else yaml)


# The servers of clouds that helpers.connect has reached, by
# "scheme://host:port": a later failure at one of them can then say
# whether the cloud's Keystone or its Barbican is in trouble.
_CLOUD_SERVERS = {}

# Up to the path's end: messages go on with ": reason" after a URL.
_URL_IN_TEXT = re.compile(r"https?://[^\s/:'\"]+(?::\d+)?(?:/[^\s:'\"]*)?")


def _base(url):
    parts = urlsplit(url or "")
    if not (parts.scheme and parts.netloc):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def note_cloud_server(url, name):
    """Remember that ``url`` is the cloud's ``"Keystone"`` or ``"Barbican"``.

    Called by :func:`helpers.connect`; the embedded server is never noted.
    """
    base = _base(url)
    if base:
        _CLOUD_SERVERS[base] = name


def failed_url(exc):
    """The URL the failed request went to, when the exception tells."""
    url = getattr(exc, "url", None)
    response = getattr(exc, "response", None)
    if not url and response is not None:
        url = getattr(response, "url", None)
    if not url:
        found = _URL_IN_TEXT.search(str(exc))
        url = found.group(0) if found else None
    return url


def _server(url):
    """``(name, base URL)`` of the server at ``url``; name may be None.

    The name is "Keystone" for a noted Keystone or any identity API path,
    "Barbican" for a noted cloud Barbican, else None (the embedded server,
    or a URL nobody noted).
    """
    base = _base(url)
    if base in _CLOUD_SERVERS:
        return _CLOUD_SERVERS[base], base
    path = urlsplit(url or "").path
    if re.search(r"/(v3|v2\.0)(/|$)", path):
        return "Keystone", base
    return None, base


def _user(cloud):
    if cloud is None or not cloud.username:
        return ""
    project = f" in project {cloud.project!r}" if cloud.project else ""
    return f" of user {cloud.username!r}{project}"


def _role(cloud):
    """"your role", or "the role of user 'x' in project 'y'" when known."""
    who = _user(cloud)
    return f"the role{who}" if who else "your role"


_VERIFY_DETAIL = re.compile(r"certificate verify failed: ([^(]+?)\s*\(_ssl")
_PLAIN_HTTP = ("WRONG_VERSION_NUMBER", "wrong version number",
               "record layer failure", "http request", "unknown protocol",
               "packet length too long")


def _explain_tls(exc, action, cloud):
    text = str(exc)
    name, base = _server(failed_url(exc))
    who = f"{name} at {base}" if name else (base or "the server")
    if any(marker in text for marker in _PLAIN_HTTP):
        if name == "Barbican":
            hint = ("The cloud's catalog gives Barbican a wrong URL: tell "
                    "your instructor.")
        else:
            hint = (f"Make {settings(cloud, 'auth_url')} start with "
                    f"http://, or ask your instructor which the lab uses.")
        return ConnectError(
            f"Could not {action}: {who} speaks plain HTTP, not HTTPS.", hint)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify" in text:
        detail = _VERIFY_DETAIL.search(text)
        reason = f" ({detail.group(1)})" if detail else ""
        return ConnectError(
            f"Could not {action}: this machine does not trust the TLS "
            f"certificate of {who}{reason}.",
            f"Point {settings(cloud, 'cacert')} at the lab's CA bundle (the "
            f".pem file from your instructor); do not switch TLS "
            f"verification off.")
    return ConnectError(
        f"Could not {action}: the TLS connection to {who} failed "
        f"({shorten(text, 120)}).",
        f"Check {settings(cloud, 'auth_url', 'cacert')} with your "
        f"instructor.")


def _listening(base):
    """True when something accepts TCP connections at ``base`` right now."""
    parts = urlsplit(base or "")
    if not parts.hostname:
        return True  # unknown: keep the message the exception suggests
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=2):
            return True
    except OSError:
        return False


def _explain_unreachable(exc, action, target, cloud):
    text = str(exc)
    name, base = _server(failed_url(exc))
    # A server that was stopped under a kept-alive connection also shows as
    # "closed the connection"; only one that still listens really did.
    closed = (("RemoteDisconnected" in text or "Connection aborted" in text)
              and _listening(base))
    if name == "Keystone":
        if closed and base.startswith("http://"):
            return ConnectError(
                f"Could not {action}: Keystone at {base} closed the "
                f"connection without answering: it serves HTTPS.",
                f"Make {settings(cloud, 'auth_url')} start with https://, "
                f"and point {settings(cloud, 'cacert', place=False)} at "
                f"the lab's CA bundle.")
        return ConnectError(
            f"Could not {action}: nothing answers at {base}, the cloud's "
            f"Keystone (where you log in).",
            f"Check {settings(cloud, 'auth_url')} against what your "
            f"instructor gave you; if it is right, Keystone is down: tell "
            f"your instructor.")
    if name == "Barbican":
        return ConnectError(
            f"Could not {action}: Keystone accepted your login, but nothing "
            f"answers at the cloud's Barbican, {base}.",
            "Your settings are right, but Barbican is down: tell your "
            "instructor, then try again.")
    if closed:
        return ConnectError(
            f"Could not {action}: {target} closed the connection "
            f"without answering.",
            "If the lab serves HTTPS, the URL must start with https://.")
    return ConnectError(
        f"Could not {action}: nothing answers at {target}.",
        "Check that the server runs and the URL is right (embedded: "
        "python -m helpers server start).")


_UUID_AT_END = re.compile(r"/[0-9a-f-]{32,36}(/payload)?/?$",
                          re.IGNORECASE)
_REGION_IN_TEXT = re.compile(r"in (\S+) region not found")


def _missing_endpoint(exc):
    return isinstance(exc, ksa.EndpointNotFound) or (
        isinstance(exc, sdk.ServiceDisabledException)
        and "service catalog" in str(exc))


def explain(exc, action, target="Barbican", hint=None, cloud=None):
    """Return the :class:`LabError` that tells a learner what ``exc`` means.

    :param exc: what openstacksdk or keystoneauth raised.
    :param action: what was being done, as a phrase ("order a key").
    :param target: where the request went, for messages.
    :param hint: what to try when Barbican refuses the request (HTTP 4xx).
    :param cloud: :class:`CloudFacts` when connecting to a cloud: messages
        then name the learner's own settings.
    """
    if isinstance(exc, LabError):
        return exc
    if isinstance(exc, ksa.SSLError):
        return _explain_tls(exc, action, cloud)
    if isinstance(exc, OSError) and "CA certificate bundle" in str(exc):
        # requests' words when OS_CACERT names a file that is not there.
        found = re.search(r"invalid path: (\S+)", str(exc))
        path = f" {found.group(1)}" if found else ""
        return ConnectError(
            f"Could not {action}: the CA bundle file{path} does not exist.",
            f"Point {settings(cloud, 'cacert')} at the lab's CA bundle (the "
            f".pem file from your instructor), with its full path.")
    if isinstance(exc, (ksa.ConnectFailure, ksa.ConnectTimeout,
                        ksa.UnknownConnectionError)):
        return _explain_unreachable(exc, action, target, cloud)
    if _missing_endpoint(exc):
        found = _REGION_IN_TEXT.search(str(exc))
        region = found.group(1) if found else (cloud and cloud.region)
        where = f" in region {region!r}" if region else ""
        return ConnectError(
            f"Could not {action}: the cloud's catalog has no key-manager "
            f"(Barbican) endpoint{where}.",
            f"Set {settings(cloud, 'region')} to the region your instructor "
            f"gave you.")
    status = _status(exc)
    name, _ = _server(failed_url(exc))
    if status == 401 and name == "Keystone":
        return AuthError(
            f"Could not {action}: Keystone refused the login{_user(cloud)} "
            f"(HTTP 401): the user name, password or project is wrong.",
            f"Check {settings(cloud, 'username', 'password', 'project')}; "
            f"if they are right, ask your instructor to reset your "
            f"password.")
    if isinstance(exc, ksa.Unauthorized) or status == 401:
        return AuthError(
            f"Could not {action}: Barbican did not accept your login token "
            f"(HTTP 401).",
            "Connect again; if it repeats, the cloud's Barbican cannot "
            "check tokens with Keystone: tell your instructor.")
    if status == 403:
        reason = barbican_reason(exc) or "Forbidden"
        if _UUID_AT_END.search(urlsplit(failed_url(exc) or "").path):
            # One order or secret, by href: Barbican answers 403 both to a
            # role that may not read and to a project that does not own it.
            return AuthError(
                f"Could not {action}: Barbican refused it (HTTP 403: "
                f"{reason}).",
                f"Either the href belongs to another project (each project "
                f"sees only its own), or {_role(cloud)} is not enough: the "
                f"exercise needs 'member' on your project.")
        return AuthError(
            f"Could not {action}: {_role(cloud)} does not allow it (HTTP "
            f"403: {reason}).",
            "The exercise needs the 'member' role on your project; ask "
            "your instructor to grant it.")
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
        if name == "Barbican" or cloud is not None:
            return LabError(
                f"Could not {action}: the cloud's Barbican failed (HTTP "
                f"{status}: {reason}).",
                "Try again in a minute; if it repeats, tell your "
                "instructor: the cause is in the cloud, not your settings.")
        return LabError(
            f"Could not {action}: {target} failed (HTTP {status}: {reason}).",
            "Try again; if it repeats, the server's log says why "
            "(embedded: python -m helpers server status shows where).")
    if isinstance(exc, sdk.NotSupported):
        return ConnectError(
            f"Could not {action}: the cloud's Barbican answered, but not "
            f"with a key-manager API this lab can use "
            f"({shorten(exc).rstrip('.')}).",
            "Tell your instructor: the catalog's key-manager endpoint may "
            "point at something else.")
    if isinstance(exc, sdk.ConfigException):
        return ConnectError(
            f"Could not {action}: the cloud configuration is not usable "
            f"({shorten(exc)}).",
            "Check OS_CLOUD and clouds.yaml, or the OS_* variables of your "
            "openrc.")
    if isinstance(exc, (sdk.SDKException, ksa.ClientException)):
        return LabError(f"Could not {action}: {shorten(exc).rstrip('.')}.",
                        "Check the connection settings and try again.")
    missing = _MISSING_SETTING.search(str(exc))
    if type(exc) is Exception and missing:
        # keystoneauth's plain Exception for a login setting left empty.
        return AuthError(
            f"Could not {action}: the login settings have no "
            f"{missing.group(1)}.",
            "Export it in your shell (an openrc asks for the password: "
            "source it again) or add it to your clouds.yaml entry.")
    return None


_MISSING_SETTING = re.compile(r"^(\w+) is a required attribute")


@contextlib.contextmanager
def explained(action, target="Barbican", hint=None, cloud=None):
    """Re-raise SDK and keystoneauth failures inside as :class:`LabError`."""
    try:
        yield
    except LabError:
        raise
    except Exception as exc:
        error = explain(exc, action, target, hint, cloud)
        if error is None:
            raise
        LOG.debug("%s failed: %r", action, exc)
        raise error from exc
