"""The embedded Barbican's process: Barbican's own WSGI app behind waitress.

Run as ``python -m helpers.wsgi --state-dir DIR --port N`` by
:mod:`helpers.embedded`, never by hand.  Barbican reads its configuration
when it is imported, from ``~/barbican.conf`` among other places, so the
parent starts this process with ``HOME`` set to the state folder that holds
that file.
"""

import argparse
import logging
import os
import sys

LOG = logging.getLogger(__name__)

# One learner, one project.  Barbican's default (secure RBAC) policies let a
# member with these roles order keys and read them back.
LAB_PROJECT_ID = "6c616200000000000000000000000001"
LAB_USER_ID = "6c616200000000000000000000000002"
LAB_ROLES = "member,reader,creator"

# With more threads, sqlite answers "database is locked" to some of 30
# learners ordering at once (measured by bench/); with two, none, at the
# same throughput.
THREADS = 2

# The headers keystonemiddleware sets (and strips from what clients send).
IDENTITY_HEADERS = (
    "HTTP_X_IDENTITY_STATUS", "HTTP_X_SERVICE_IDENTITY_STATUS",
    "HTTP_X_DOMAIN_", "HTTP_X_PROJECT_", "HTTP_X_TENANT", "HTTP_X_USER",
    "HTTP_X_ROLE", "HTTP_X_SERVICE_", "HTTP_X_SYSTEM_SCOPE",
    "HTTP_X_IS_ADMIN_PROJECT", "HTTP_X_AUTH_", "HTTP_X_TRUST_",
    "HTTP_X_APPLICATION_CREDENTIAL_", "HTTP_OPENSTACK_SYSTEM_SCOPE")

PASTE_INI = """\
[composite:main]
use = egg:Paste#urlmap
/: barbican_version
/healthcheck: healthcheck
/v1: barbican_api

[pipeline:barbican_version]
pipeline = cors request_id http_proxy_to_wsgi microversion versionapp

[pipeline:barbican_api]
pipeline = cors request_id http_proxy_to_wsgi context microversion apiapp

[app:apiapp]
paste.app_factory = barbican.api.app:create_main_app

[app:versionapp]
paste.app_factory = barbican.api.app:create_version_app

[filter:context]
paste.filter_factory = barbican.api.middleware.context:ContextMiddleware.factory

[filter:microversion]
paste.filter_factory = barbican.api.middleware.microversion:MicroversionMiddleware.factory

[filter:cors]
paste.filter_factory = oslo_middleware.cors:filter_factory
oslo_config_project = barbican

[filter:request_id]
paste.filter_factory = oslo_middleware.request_id:RequestId.factory

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware:HTTPProxyToWSGI.factory

[app:healthcheck]
paste.app_factory = oslo_middleware:Healthcheck.app_factory
backends = disable_by_file
disable_by_file_path = {state_dir}/healthcheck_disable
"""


def with_lab_identity(app):
    """Wrap ``app`` so every request arrives as the lab's one learner.

    Without Keystone nobody vouches for the caller.  These are the headers
    keystonemiddleware would set after checking a token.  As it does, every
    identity header a client sent is dropped first (a system scope or a
    service role would otherwise reach Barbican's policies), so the
    identity is always the same.
    """
    identity = {
        "HTTP_X_IDENTITY_STATUS": "Confirmed",
        "HTTP_X_PROJECT_ID": LAB_PROJECT_ID,
        "HTTP_X_USER_ID": LAB_USER_ID,
        "HTTP_X_ROLES": LAB_ROLES,
    }

    def lab_identity(environ, start_response):
        for key in [k for k in environ if k.startswith(IDENTITY_HEADERS)]:
            del environ[key]
        environ.update(identity)
        return app(environ, start_response)

    return lab_identity


def build_app(state_dir):
    """Load Barbican's WSGI app from the paste file in ``state_dir``."""
    from paste import deploy

    from helpers import adjustments

    # Both matter once a worker process shares the database and a broker
    # carries the orders (asynchronous mode); see helpers.adjustments.
    adjustments.begin_sqlite_immediately()
    adjustments.give_up_on_unreachable_broker()
    paste_file = os.path.join(state_dir, "barbican-api-paste.ini")
    return with_lab_identity(deploy.loadapp(f"config:{paste_file}"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m helpers.wsgi")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=THREADS)
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = build_app(args.state_dir)

    import waitress
    LOG.info("serving Barbican on 127.0.0.1:%s", args.port)
    waitress.serve(app, host="127.0.0.1", port=args.port,
                   threads=args.threads, ident="barbican-lab",
                   clear_untrusted_proxy_headers=True)


if __name__ == "__main__":
    sys.exit(main())
