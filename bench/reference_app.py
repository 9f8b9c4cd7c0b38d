"""The reference server's WSGI file, given to ``uwsgi --wsgi-file``.

Barbican's own entry point, ``barbican.wsgi.api:application``, calls
``barbican.api.app.get_api_wsgi_script()``, which is one line: paste.deploy's
``loadapp`` on ``/etc/barbican/barbican-api-paste.ini``.  This file makes the
same call on the paste file the embedded server writes into its state folder
(nothing is written to /etc), and puts the same lab identity in front that
the embedded server uses, because there is no Keystone to vouch for anyone.
Barbican itself reads ``~/barbican.conf``: uWSGI runs with ``HOME`` set to
that state folder, as the embedded server does.

``helpers/wsgi.py`` is loaded as a lone file, not as part of the
``helpers`` package: importing the package would also import pandas and
openstacksdk (``helpers/__init__.py`` imports every helper), which
Barbican does not need and which would blur the memory figures.
"""

import importlib.util
import os

from paste import deploy

_spec = importlib.util.spec_from_file_location(
    "lab_identity", os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "helpers", "wsgi.py"))
_lab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_lab)
with_lab_identity = _lab.with_lab_identity

_PASTE_FILE = os.path.join(os.environ["BARBICAN_LAB_STATE"],
                           "barbican-api-paste.ini")

application = with_lab_identity(deploy.loadapp(f"config:{_PASTE_FILE}"))
