"""Errors a learner can act on.

Every failure the helpers report is a :class:`LabError`: one line that says
what went wrong, and a hint that says what to try next.  The notebook panel
and the command line show ``str(error)`` and nothing else, so no learner
meets a bare traceback.  The original exception stays chained
(``raise ... from``) for whoever wants the details.
"""


class LabError(Exception):
    """A failure explained for a learner.

    :param message: what went wrong, in one sentence.
    :param hint: what to try next.
    """

    def __init__(self, message, hint=""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self):
        if self.hint:
            return f"{self.message} {self.hint}"
        return self.message


class ServerError(LabError):
    """The embedded Barbican could not be started, stopped or reached."""


class ConnectError(LabError):
    """No Barbican answers where the configuration points."""


class AuthError(LabError):
    """The cloud refused the credentials or the role is not enough."""


class InvalidInput(LabError):
    """A value the helpers can tell is wrong before asking Barbican."""


class Refused(LabError):
    """Barbican refused a request at once (HTTP 4xx), with its reason."""

    def __init__(self, message, hint="", status_code=None, reason=None):
        super().__init__(message, hint)
        self.status_code = status_code
        self.reason = reason


class OrderFailed(LabError):
    """Barbican accepted the order, then it ended in ERROR."""

    def __init__(self, message, hint="", error_code=None, reason=None,
                 order_ref=None):
        super().__init__(message, hint)
        self.error_code = error_code
        self.reason = reason
        self.order_ref = order_ref


class OrderTimeout(LabError):
    """The order was still PENDING when the wait ran out."""


class WaitCancelled(LabError):
    """The learner stopped the wait before the order became ACTIVE."""


class NotFound(LabError):
    """Barbican does not know the order or secret asked for."""


class NotReady(LabError):
    """The step asked for needs an earlier one first (no key before ACTIVE)."""


class KeyFileExists(LabError):
    """A different key file is already where the key would be saved."""
