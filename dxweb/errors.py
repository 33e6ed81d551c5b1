"""API errors, rendered as {"error": {"type", "message"}} with a 4xx status (dxweb/middleware.py)."""

from contextlib import contextmanager

from django.http import JsonResponse


class DXError(Exception):
    """An error the client is told about; `type` names a dxpy.exceptions class.

    `field` names the input it is about, as the API body spells it ("name", "runSpec.code",
    "input.reads"), so that a page form puts the message next to its own field.
    """

    type = "InvalidInput"
    status = 422

    def __init__(self, message, details=None, field=None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.field = field

    def to_dict(self):
        error = {"type": self.type, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


def no_sniffing(response):
    """Every API answer is JSON and says so: browsers must not guess another type."""
    response["X-Content-Type-Options"] = "nosniff"
    return response


def error_response(error):
    """The API's answer to a DXError: its JSON with its status (and Retry-After when it has one)."""
    response = no_sniffing(JsonResponse(error.to_dict(), status=error.status))
    if getattr(error, "retry_after", None):
        response["Retry-After"] = str(error.retry_after)
    return response


@contextmanager
def about(field):
    """Name `field` on the DXErrors raised inside that do not name a field yet."""
    try:
        yield
    except DXError as err:
        if err.field is None:
            err.field = field
        raise


class InvalidInput(DXError):
    type = "InvalidInput"
    status = 422


class BadRequest(InvalidInput):
    """A request that is not a JSON object at all."""

    status = 400


class InvalidType(DXError):
    type = "InvalidType"
    status = 422


class InvalidState(DXError):
    type = "InvalidState"
    status = 422


class InvalidAuthentication(DXError):
    type = "InvalidAuthentication"
    status = 401


class PermissionDenied(DXError):
    type = "PermissionDenied"
    status = 403


class ResourceNotFound(DXError):
    type = "ResourceNotFound"
    status = 404


class MethodNotAllowed(DXError):
    type = "MethodNotAllowed"
    status = 405


class PayloadTooLarge(DXError):
    type = "InvalidInput"
    status = 413


class InternalError(DXError):
    type = "InternalError"
    status = 500


class TooManyRequests(DXError):
    """Calls refused for a while; dxpy waits `Retry-After` seconds and retries."""

    type = "TooManyRequests"
    status = 429

    def __init__(self, message, retry_after):
        super().__init__(message)
        self.retry_after = retry_after
