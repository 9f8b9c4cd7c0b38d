"""Orders and secrets named any way a learner has them at hand.

Barbican answers with hrefs (``http://.../v1/orders/<uuid>``), the CLI
prints hrefs, and openstacksdk objects carry one or the other.  The SDK's
``get_order`` wants the bare UUID, so every helper turns what it is given
into that UUID here, and names the culprit when it cannot.
"""

import re
from urllib.parse import urlsplit

from helpers.errors import InvalidInput

_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?"
                   r"[0-9a-f]{12}$", re.IGNORECASE)


def _text_of(thing, attributes):
    if isinstance(thing, str):
        return thing.strip()
    for attribute in attributes:
        value = getattr(thing, attribute, None)
        if value:
            return str(value)
    raise InvalidInput(
        f"{thing!r} is not an href, a UUID or an SDK object with one.",
        "Pass the href Barbican printed, for example "
        "http://127.0.0.1:9311/v1/orders/<uuid>.")


def uuid_of(thing, kind):
    """Return the UUID of an order or secret given as href, UUID or object.

    :param thing: an href, a UUID, or an SDK ``Order``/``Secret``.
    :param kind: ``"order"`` or ``"secret"``, for the collection in the href
        and the error message.
    :returns: the UUID as a string.
    :raises InvalidInput: ``thing`` names no order or secret.
    """
    text = _text_of(thing, (f"{kind}_ref", "id"))
    if _UUID.match(text):
        return text
    parts = urlsplit(text)
    segments = [s for s in parts.path.split("/") if s]
    if (parts.scheme in ("http", "https") and len(segments) >= 2
            and segments[-2] == f"{kind}s" and _UUID.match(segments[-1])):
        return segments[-1]
    raise InvalidInput(
        f"{text[:120]!r} is not {'an' if kind[0] in 'aeiou' else 'a'} "
        f"{kind} href or UUID.",
        f"A {kind} href looks like "
        f"http://127.0.0.1:9311/v1/{kind}s/<uuid>; copy it from the "
        f"{kind} table.")
