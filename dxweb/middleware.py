"""The error boundary: a DXError raised by a view becomes the API's JSON or the page people see.

Views raise (permissions.access_* refuse with ResourceNotFound or PermissionDenied) and never turn
errors into responses themselves; what a form shows next to a field stays with the form (DXError.field).
"""

from django.core.exceptions import PermissionDenied as Forbidden
from django.core.handlers.exception import response_for_exception
from django.http import Http404
from django.utils.deprecation import MiddlewareMixin

from .errors import DXError, ResourceNotFound, error_response


def answers_json(view):
    """Mark a view whose DXErrors are answered as the API answers them: {"error": {"type", "message"}}."""
    view.answers_json = True
    return view


class DXErrorMiddleware(MiddlewareMixin):
    """Answer a DXError raised by a view: JSON with its status for views marked answers_json (the API,
    page scripts), else the 404 page for ResourceNotFound (missing and hidden alike) and the 403 page
    with the message for any other refusal."""

    def process_exception(self, request, exception):
        if not isinstance(exception, DXError):
            return None
        match = request.resolver_match
        if match is not None and getattr(match.func, "answers_json", False):
            return error_response(exception)
        # Rendered as Django renders Http404 and PermissionDenied: handler404/403, logged once.
        if isinstance(exception, ResourceNotFound):
            return response_for_exception(request, Http404("Not found"))
        return response_for_exception(request, Forbidden(exception.message))
