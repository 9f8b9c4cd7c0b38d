"""A small OpenStack cloud on 127.0.0.1: a real Keystone and a real Barbican.

In a classroom the learners' Barbican sits behind Keystone, usually over
HTTPS with the lab's own certificate authority.  This module builds such a
cloud in a temporary folder so the tests, the benchmarks and instructors can
try the classroom path without a cloud:

- Keystone (the ``keystone`` package) with sqlite and Fernet tokens,
  bootstrapped with an admin, region ``RegionOne`` and identity endpoints;
- a ``key-manager`` service whose endpoints point at Barbican (the same
  ``barbican`` package as the embedded server), which runs Barbican's stock
  paste pipeline: ``authtoken`` checks every token with Keystone, then
  ``context`` turns it into Barbican's request context;
- a ``barbican`` service user with the ``service`` role, two learners
  (``learner1``, ``learner2``) with ``member`` on projects ``lab1`` and
  ``lab2``, and ``observer`` with only ``reader`` on ``lab3``;
- a second region, ``RegionTwo``, with no key-manager endpoint;
- with ``tls=True``, both servers speak HTTPS with certificates signed by a
  CA made for the occasion (``ca.pem`` in the folder).

Both servers run under gunicorn in processes of their own; :meth:`stop`
ends them through their own process handles.

From Python (tests, ``bench/``)::

    with TestCloud(folder, tls=True) as cloud:
        env = cloud.openrc("learner1")     # OS_* variables, as an openrc
        path = cloud.write_clouds_yaml()   # one entry per user

For a dry run before class, from the repository's root::

    python -m tests.testcloud up [--tls] [--folder DIR]

prints where the openrc files (one per user, and one for ``admin``) and
``clouds.yaml`` are, and keeps the cloud up until Ctrl-C.  Passwords are
random and never printed; the files that hold them are mode 0600.
"""

import argparse
import base64
import contextlib
import datetime
import grp
import ipaddress
import logging
import os
import pwd
import secrets
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

LOG = logging.getLogger(__name__)

HOST = "127.0.0.1"
REGION = "RegionOne"
OTHER_REGION = "RegionTwo"
DOMAIN = "Default"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0

# Who is in the class: user name -> (project, role on that project).
LEARNERS = {
    "learner1": ("lab1", "member"),
    "learner2": ("lab2", "member"),
    "observer": ("lab3", "reader"),
}
SERVICE_USER = "barbican"
SERVICE_PROJECT = "service"

KEYSTONE_CONF = """\
# Written by tests/testcloud.py.
[DEFAULT]
log_file = {folder}/keystone.log

[database]
connection = sqlite:///{folder}/keystone.sqlite

[token]
provider = fernet

[fernet_tokens]
key_repository = {folder}/fernet-keys

[fernet_receipts]
key_repository = {folder}/fernet-receipts

[credential]
key_repository = {folder}/credential-keys

[identity]
# bcrypt's cheapest cost: a real cloud uses more, a test wants speed.
password_hash_rounds = 4
"""

BARBICAN_CONF = """\
# Written by tests/testcloud.py.
[DEFAULT]
host_href = {barbican_url}
db_auto_create = True
log_file = {folder}/barbican.log

[database]
connection = sqlite:///{folder}/barbican.sqlite

[queue]
enable = False

[secretstore]
enabled_secretstore_plugins = store_crypto

[crypto]
enabled_crypto_plugins = simple_crypto

[simple_crypto_plugin]
kek = {kek}

[keystone_authtoken]
www_authenticate_uri = {keystone_url}/v3
auth_url = {keystone_url}/v3
auth_type = password
username = {service_user}
password = {service_password}
project_name = {service_project}
user_domain_name = {domain}
project_domain_name = {domain}
region_name = {region}
{cafile_line}
"""


class CloudError(RuntimeError):
    """The test cloud could not be built or started; the message says why."""


@dataclass
class Account:
    """A user of the test cloud and the project they work in."""

    username: str
    password: str
    project: str
    role: str

    def __repr__(self):
        # Keep the password out of pytest's assertion rewrites and logs.
        return (f"Account({self.username!r}, project={self.project!r}, "
                f"role={self.role!r})")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Path(path)


def _child_environment(**extra):
    """This process's environment without any cloud settings, plus extra.

    A learner's ``OS_*`` variables must not reach the servers (keystone-
    manage, for one, reads ``OS_BOOTSTRAP_*``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(extra)
    return env


def make_certificates(folder, days=7):
    """Make a private CA and a server certificate for 127.0.0.1 signed by it.

    The certificate names ``127.0.0.1`` (IP) and ``localhost`` (DNS) as
    subject alternative names, as a lab's certificate names its host.

    :param folder: where to write ``ca.pem``, ``server.pem`` and
        ``server-key.pem`` (the key with mode 0600).
    :param days: how long both stay valid.
    :returns: the paths ``(ca, certificate, key)``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(folder)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), \
        now + datetime.timedelta(days=days)

    def usage(**allowed):
        names = ("digital_signature", "content_commitment",
                 "key_encipherment", "data_encipherment", "key_agreement",
                 "key_cert_sign", "crl_sign", "encipher_only",
                 "decipher_only")
        return x509.KeyUsage(**{n: allowed.get(n, False) for n in names})

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(
        NameOID.COMMON_NAME, "barbican-lab test cloud CA")])
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0),
                         critical=True)
          .add_extension(usage(key_cert_sign=True, crl_sign=True),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(
              ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                    HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address(HOST)),
            x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                       critical=True)
        .add_extension(usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(
            key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256()))

    pem = serialization.Encoding.PEM
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(pem))
    cert_path = folder / "server.pem"
    cert_path.write_bytes(certificate.public_bytes(pem))
    key_path = _write_private(folder / "server-key.pem", key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode())
    return ca_path, cert_path, key_path


class Server:
    """One gunicorn server of the test cloud, run through this module.

    :param name: ``"keystone"`` or ``"barbican"``.
    :param folder: its own folder (configuration, data, log).
    :param port: its port on 127.0.0.1.
    :param tls: ``(certificate, key)`` paths to serve HTTPS, or ``None``.
    :param env: extra environment variables for the process.
    :param ready_path: the path that answers once the server is up.
    """

    def __init__(self, name, folder, port, tls=None, env=None,
                 ready_path="/"):
        self.name = name
        self.ready_path = ready_path
        self.folder = Path(folder)
        self.port = port
        self.tls = tls
        self.env = env or {}
        self.process = None
        self.log = self.folder / "gunicorn.log"

    @property
    def url(self):
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{HOST}:{self.port}"

    def start(self):
        """Start the server process; :meth:`wait_ready` waits for it."""
        if self.running:
            return
        command = [sys.executable, str(Path(__file__).resolve()), "serve",
                   self.name, "--port", str(self.port)]
        if self.tls:
            command += ["--certfile", str(self.tls[0]),
                        "--keyfile", str(self.tls[1])]
        # HOME is the server's folder: Barbican and its plugins look for
        # their configuration there, and nothing of the user's is read.
        env = _child_environment(HOME=str(self.folder), **self.env)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.folder, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        LOG.info("started %s, pid %s, on %s", self.name, self.process.pid,
                 self.url)

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, context=None, timeout=START_TIMEOUT):
        """Wait until ``GET ready_path`` answers with a status below 500.

        :param context: the SSL context that trusts the cloud's CA.
        :raises CloudError: the process ended, or did not answer in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise CloudError(
                    f"The test cloud's {self.name} ended while starting "
                    f"(exit code {self.process.poll()}): "
                    f"{' | '.join(self.log_tail())}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path,
                                            timeout=2,
                                            context=context) as response:
                    if response.status < 500:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise CloudError(
                    f"The test cloud's {self.name} did not answer at "
                    f"{self.url} within {timeout:.0f} s; see {self.log}.")
            time.sleep(0.1)

    def log_tail(self, lines=5):
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]

    def terminate(self):
        """Ask the server to stop (SIGTERM); :meth:`stop` waits for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self):
        """Stop the server by its process handle and wait for it to end."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                LOG.warning("%s ignored SIGTERM; killing it", self.name)
                # The group holds the master and its worker.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        LOG.info("stopped %s, pid %s", self.name, self.process.pid)


class TestCloud:
    """A Keystone-backed Barbican in ``folder``, on free ports.

    :param folder: an empty (or new) folder for everything the cloud keeps.
    :param tls: serve both servers over HTTPS with a private CA.
    """

    # Not a test class, whatever pytest thinks of the name.
    __test__ = False

    def __init__(self, folder, tls=False):
        self.folder = Path(folder).resolve()
        self.tls = tls
        self.ca_file = None
        self.start_seconds = None
        self.timings = {}  # seconds from the start to the end of each step
        self.admin = Account("admin", secrets.token_urlsafe(16), "admin",
                             "admin")
        self.service = Account(SERVICE_USER, secrets.token_urlsafe(16),
                               SERVICE_PROJECT, "service")
        self.accounts = {
            name: Account(name, secrets.token_urlsafe(16), project, role)
            for name, (project, role) in LEARNERS.items()}
        self.keystone = None
        self.barbican = None

    @property
    def keystone_url(self):
        """Keystone's root URL (an openrc's ``OS_AUTH_URL`` adds ``/v3``)."""
        return self.keystone.url

    @property
    def auth_url(self):
        return f"{self.keystone.url}/v3"

    @property
    def barbican_url(self):
        return self.barbican.url

    @property
    def passwords(self):
        """Every password of the cloud, to check that none leaks."""
        return [a.password for a in (self.admin, self.service,
                                     *self.accounts.values())]

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _ssl_context(self):
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _prepare(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        keystone_dir = self.folder / "keystone"
        barbican_dir = self.folder / "barbican"
        for d in (keystone_dir, barbican_dir):
            d.mkdir(exist_ok=True, mode=0o700)
        tls = None
        if self.tls:
            self.ca_file, cert, key = make_certificates(self.folder)
            tls = (cert, key)
        self.keystone = Server(
            "keystone", keystone_dir, free_port(), tls,
            env={"OS_KEYSTONE_CONFIG_DIR": str(keystone_dir)},
            ready_path="/v3")
        self.barbican = Server("barbican", barbican_dir, free_port(), tls,
                               ready_path="/healthcheck")
        _write_private(keystone_dir / "keystone.conf",
                       KEYSTONE_CONF.format(folder=keystone_dir))
        # Barbican's KEK is a Fernet key: url-safe base64 of 32 bytes.
        kek = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        cafile = f"cafile = {self.ca_file}" if self.tls else ""
        _write_private(barbican_dir / "barbican.conf", BARBICAN_CONF.format(
            folder=barbican_dir, barbican_url=self.barbican.url,
            keystone_url=self.keystone.url, kek=kek,
            service_user=self.service.username,
            service_password=self.service.password,
            service_project=self.service.project, domain=DOMAIN,
            region=REGION, cafile_line=cafile))

    def _bootstrap_keystone(self):
        """Run keystone-manage's set-up steps (one process, see _manage)."""
        folder = self.keystone.folder
        command = [sys.executable, str(Path(__file__).resolve()), "manage",
                   "--config-file", str(folder / "keystone.conf"),
                   "--region", REGION, "--public-url", self.auth_url]
        # keystone-manage bootstrap reads the admin password from this
        # variable: it never shows in a process listing.
        env = _child_environment(HOME=str(folder),
                   OS_KEYSTONE_CONFIG_DIR=str(folder),
                   OS_BOOTSTRAP_PASSWORD=self.admin.password)
        with open(folder / "manage.log", "ab") as log:
            done = subprocess.run(command, check=False, cwd=folder, env=env,
                                  stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT,
                                  timeout=START_TIMEOUT)
        if done.returncode != 0:
            tail = (folder / "manage.log").read_text(
                errors="replace").splitlines()[-5:]
            raise CloudError(f"keystone-manage failed (exit code "
                             f"{done.returncode}): {' | '.join(tail)}")

    def admin_connection(self):
        """An openstacksdk connection as the cloud's admin."""
        import openstack

        return openstack.connect(
            load_yaml_config=False, load_envvars=False,
            auth_url=self.auth_url, username=self.admin.username,
            password=self.admin.password, project_name=self.admin.project,
            user_domain_name=DOMAIN, project_domain_name=DOMAIN,
            region_name=REGION, cacert=self.ca_file and str(self.ca_file),
            identity_interface="public")

    def _provision(self):
        """Create the catalog entries, projects, users and roles."""
        conn = self.admin_connection()
        identity = conn.identity
        identity.create_region(id=OTHER_REGION)
        keystone_service = next(iter(identity.services(type="identity")))
        identity.create_endpoint(service_id=keystone_service.id,
                                 interface="public", url=self.auth_url,
                                 region_id=OTHER_REGION)
        key_manager = identity.create_service(
            name="barbican", type="key-manager",
            description="Key manager (test cloud)")
        for interface in ("public", "internal", "admin"):
            identity.create_endpoint(service_id=key_manager.id,
                                     interface=interface,
                                     url=self.barbican_url, region_id=REGION)
        roles = {r.name: r for r in identity.roles()}
        domain = identity.find_domain(DOMAIN.lower(), ignore_missing=False)
        for account in (self.service, *self.accounts.values()):
            project = identity.create_project(name=account.project,
                                              domain_id=domain.id)
            user = identity.create_user(
                name=account.username, password=account.password,
                domain_id=domain.id, default_project_id=project.id)
            identity.assign_project_role_to_user(project, user,
                                                 roles[account.role])
        conn.close()

    def start(self):
        """Build the cloud and wait until a learner's token works.

        :returns: ``self``.
        :raises CloudError: a step failed; the message says which.
        """
        started = time.monotonic()

        def step(name, action, *args):
            action(*args)
            self.timings[name] = round(time.monotonic() - started, 1)

        try:
            step("prepared", self._prepare)
            # Barbican needs Keystone only at its first request: start it
            # now, while keystone-manage sets Keystone up.
            self.barbican.start()
            step("keystone-manage done", self._bootstrap_keystone)
            self.keystone.start()
            step("keystone ready", self.keystone.wait_ready,
                 self._ssl_context())
            step("provisioned", self._provision)
            step("barbican ready", self.barbican.wait_ready,
                 self._ssl_context())
            step("learner call done", self._check_learner_call)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        LOG.info("test cloud up in %.1f s (%s): Keystone %s, Barbican %s",
                 self.start_seconds, self.timings, self.keystone_url,
                 self.barbican_url)
        return self

    def _check_learner_call(self):
        """One authenticated Barbican call, so authtoken is known to work."""
        import openstack

        account = self.accounts["learner1"]
        conn = openstack.connect(
            load_yaml_config=False, load_envvars=False,
            auth_url=self.auth_url, username=account.username,
            password=account.password, project_name=account.project,
            user_domain_name=DOMAIN, project_domain_name=DOMAIN,
            region_name=REGION, cacert=self.ca_file and str(self.ca_file))
        try:
            next(iter(conn.key_manager.orders(limit=1)), None)
        except Exception as exc:
            raise CloudError(
                f"The test cloud's Barbican refused a learner's token "
                f"({type(exc).__name__}); see {self.barbican.folder}"
                f"/barbican.log") from exc
        finally:
            conn.close()

    @contextlib.contextmanager
    def stopped(self, name):
        """Stop ``"keystone"`` or ``"barbican"`` for a while, then restart it.

        For trying what learners meet when one of the two is down.
        """
        server = {"keystone": self.keystone, "barbican": self.barbican}[name]
        server.stop()
        try:
            yield server
        finally:
            server.start()
            server.wait_ready(self._ssl_context())

    def stop(self):
        """Stop both servers (each by its own process handle)."""
        servers = [s for s in (self.barbican, self.keystone) if s]
        for server in servers:  # both at once, then wait for each
            server.terminate()
        for server in servers:
            server.stop()

    def account(self, username):
        """The :class:`Account` of ``username`` (``"admin"`` included)."""
        if username == self.admin.username:
            return self.admin
        return self.accounts[username]

    def openrc(self, username="learner1", region=REGION, cacert=True):
        """The ``OS_*`` variables an openrc for ``username`` exports.

        :param region: ``OS_REGION_NAME``.
        :param cacert: include ``OS_CACERT`` (TLS clouds only).
        :returns: a dict of environment variables.
        """
        account = self.account(username)
        env = {
            "OS_AUTH_URL": self.auth_url,
            "OS_IDENTITY_API_VERSION": "3",
            "OS_USERNAME": account.username,
            "OS_PASSWORD": account.password,
            "OS_PROJECT_NAME": account.project,
            "OS_USER_DOMAIN_NAME": DOMAIN,
            "OS_PROJECT_DOMAIN_NAME": DOMAIN,
            "OS_REGION_NAME": region,
            "OS_INTERFACE": "public",
        }
        if self.tls and cacert:
            env["OS_CACERT"] = str(self.ca_file)
        return env

    def clouds_entry(self, username="learner1", region=REGION, cacert=True):
        """A ``clouds.yaml`` entry for ``username``, as a dict."""
        account = self.account(username)
        entry = {
            "auth": {
                "auth_url": self.auth_url,
                "username": account.username,
                "password": account.password,
                "project_name": account.project,
                "user_domain_name": DOMAIN,
                "project_domain_name": DOMAIN,
            },
            "region_name": region,
            "identity_api_version": 3,
            "interface": "public",
        }
        if self.tls and cacert:
            entry["cacert"] = str(self.ca_file)
        return entry

    def write_clouds_yaml(self, path=None):
        """Write a ``clouds.yaml`` with one entry per user (mode 0600).

        Entries are named ``lab-<user>``; ``lab-learner1-nocacert`` leaves
        out the CA bundle and ``lab-learner1-regiontwo`` picks the region
        without a key-manager endpoint.

        :returns: the file's path.
        """
        import yaml

        clouds = {f"lab-{name}": self.clouds_entry(name)
                  for name in self.accounts}
        clouds["lab-learner1-regiontwo"] = self.clouds_entry(
            "learner1", region=OTHER_REGION)
        if self.tls:
            clouds["lab-learner1-nocacert"] = self.clouds_entry(
                "learner1", cacert=False)
        path = Path(path or self.folder / "clouds.yaml")
        _write_private(path, yaml.safe_dump({"clouds": clouds},
                                            sort_keys=False))
        return path

    def write_openrc(self, username, path=None):
        """Write ``username``'s openrc (mode 0600); returns its path."""
        path = Path(path or self.folder / f"{username}-openrc.sh")
        lines = [f"export {k}={shlex.quote(v)}"
                 for k, v in self.openrc(username).items()]
        _write_private(path, "\n".join(lines) + "\n")
        return path


def start_clouds(folders_and_tls):
    """Start several test clouds at once; stop them all if one fails.

    :param folders_and_tls: ``(folder, tls)`` pairs.
    :returns: the started :class:`TestCloud` objects, in the same order.
    """
    clouds = [TestCloud(folder, tls) for folder, tls in folders_and_tls]
    with ThreadPoolExecutor(len(clouds)) as pool:
        futures = [pool.submit(cloud.start) for cloud in clouds]
        errors = [f.exception() for f in futures]
    if any(errors):
        stop_clouds(clouds)
        raise next(e for e in errors if e)
    return clouds


def stop_clouds(clouds):
    """Stop several test clouds at once."""
    for cloud in clouds:
        for server in (cloud.barbican, cloud.keystone):
            if server is not None:
                server.terminate()
    for cloud in clouds:
        cloud.stop()


# ---- What runs inside the child processes --------------------------------

def _manage(args):
    """keystone-manage's four set-up commands, in one Python process.

    Each ``keystone-manage`` run spends about 3 s importing Keystone; its
    own entry point run four times here, with the configuration cleared in
    between, costs one import instead of four.
    """
    from keystone.cmd import cli
    from keystone.conf import CONF

    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    owner = ["--keystone-user", user, "--keystone-group", group]
    steps = [
        ["db_sync"],
        ["fernet_setup", *owner],
        ["credential_setup", *owner],
        ["bootstrap", "--bootstrap-username", "admin",
         "--bootstrap-project-name", "admin",
         "--bootstrap-role-name", "admin",
         "--bootstrap-region-id", args.region,
         "--bootstrap-admin-url", args.public_url,
         "--bootstrap-internal-url", args.public_url,
         "--bootstrap-public-url", args.public_url],
    ]
    for step in steps:
        cli.main(argv=["keystone-manage", "--config-file", args.config_file,
                       *step])
        CONF.clear()
    return 0


def _serve(args):
    """Serve Keystone or Barbican with gunicorn (one worker, threads)."""
    from gunicorn.app.base import BaseApplication

    # Keystone parses sys.argv as its own options: it must see none.
    sys.argv = sys.argv[:1]

    def load_keystone():
        from keystone.server import wsgi

        return wsgi.initialize_public_application()

    def load_barbican():
        from paste import deploy

        # Barbican's own paste file, as shipped: /v1 goes through
        # authtoken and context.
        return deploy.loadapp(f"config:{stock_barbican_paste()}")

    options = {
        "bind": f"{HOST}:{args.port}",
        "workers": 1,
        "worker_class": "gthread",
        # sqlite allows one writer: Barbican answers "database is locked"
        # (HTTP 500) when two learners order at once, so its requests take
        # turns.  A real cloud's database has no such limit.
        "threads": 4 if args.app == "keystone" else 1,
        "timeout": 120,
        # Open keep-alive connections would hold a stop this long.
        "graceful_timeout": 2,
        "proc_name": f"testcloud-{args.app}",
        # The default control socket lives in ~/.gunicorn and would be
        # shared; none is needed.
        "control_socket_disable": True,
        "errorlog": "-",
        "loglevel": "warning",
    }
    if args.certfile:
        options.update(certfile=args.certfile, keyfile=args.keyfile)
    load = load_keystone if args.app == "keystone" else load_barbican

    class Gunicorn(BaseApplication):
        def load_config(self):
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self):
            return load()

    Gunicorn().run()
    return 0


def stock_barbican_paste():
    """The ``barbican-api-paste.ini`` the barbican wheel installs."""
    for file in metadata.files("barbican") or ():
        if str(file).endswith("etc/barbican/barbican-api-paste.ini"):
            return Path(file.locate()).resolve()
    raise CloudError("The barbican package ships no "
                     "barbican-api-paste.ini; reinstall barbican.")


def _up(args):
    """Keep a test cloud up until Ctrl-C, for an instructor's dry run."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder = Path(args.folder or tempfile.mkdtemp(prefix="testcloud-"))
    cloud = TestCloud(folder, tls=args.tls)
    try:
        cloud.start()  # stops what it started if it fails or is interrupted
    except KeyboardInterrupt:
        return 130
    try:
        clouds_yaml = cloud.write_clouds_yaml()
        openrcs = [cloud.write_openrc(name)
                   for name in (*cloud.accounts, cloud.admin.username)]
        print(f"Test cloud up in {cloud.start_seconds:.1f} s.")
        print(f"  Keystone: {cloud.auth_url}")
        print(f"  Barbican: {cloud.barbican_url}")
        if cloud.tls:
            print(f"  CA bundle: {cloud.ca_file}")
        print("openrc files (learner1, learner2: member; observer: reader; "
              "admin):")
        for path in openrcs:
            print(f"  {path}")
        print(f"clouds.yaml: {clouds_yaml}")
        print("Try, in another shell:")
        print(f"  . {openrcs[0]} && python -m helpers check")
        print(f"  OS_CLIENT_CONFIG_FILE={clouds_yaml} OS_CLOUD=lab-learner2 "
              f"python -m helpers check")
        print("Ctrl-C stops both servers.", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(1.0):
                if not (cloud.keystone.running and cloud.barbican.running):
                    print("A server ended; stopping.", file=sys.stderr)
                    return 1
    finally:
        cloud.stop()
        print(f"Stopped. The folder stays: {folder}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.testcloud")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run a test cloud until Ctrl-C")
    up.add_argument("--tls", action="store_true",
                    help="serve HTTPS with a CA made for the occasion")
    up.add_argument("--folder", help="where to keep it (default: new "
                                     "temporary folder)")
    up.set_defaults(run=_up)
    # The two below are what the cloud's own child processes run.
    serve = commands.add_parser("serve")
    serve.add_argument("app", choices=("keystone", "barbican"))
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--certfile")
    serve.add_argument("--keyfile")
    serve.set_defaults(run=_serve)
    manage = commands.add_parser("manage")
    manage.add_argument("--config-file", required=True)
    manage.add_argument("--region", required=True)
    manage.add_argument("--public-url", required=True)
    manage.set_defaults(run=_manage)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
