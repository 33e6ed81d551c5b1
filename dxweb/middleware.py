"""The error boundary: a DXError raised by a view becomes the API's JSON or the page people see.

Views raise (permissions.access_* refuse with ResourceNotFound or PermissionDenied) and never turn
errors into responses themselves; what a form shows next to a field stays with the form (DXError.field).
"""

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import PermissionDenied as Forbidden
from django.core.handlers.exception import response_for_exception
from django.http import Http404
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.deprecation import MiddlewareMixin

from .errors import DXError, ResourceNotFound, error_response


def answers_json(view):
    """Mark a view whose DXErrors are answered as the API answers them: {"error": {"type", "message"}}."""
    view.answers_json = True
    return view


def wants_page(request):
    """Whether the request is a browser opening an address (typed, a link, a bookmark): a GET or HEAD
    that accepts text/html and carries no token. dx and dxpy POST JSON with an Authorization header and
    never accept text/html; page scripts' fetch() accepts */*; so these keep the API's JSON."""
    return (
        request.method in ("GET", "HEAD")
        and "HTTP_AUTHORIZATION" not in request.META
        and "text/html" in request.META.get("HTTP_ACCEPT", "")
    )


# What a page needs of the page middleware (settings.MIDDLEWARE) when the request came through the
# lean API handler (dxweb/asgi.py), which has none: the session and its user (the top navigation),
# the CSRF cookie (the Log out form), the security headers. In settings.MIDDLEWARE's order.
PAGE_MIDDLEWARE = (
    SecurityMiddleware,
    SessionMiddleware,
    CsrfViewMiddleware,
    AuthenticationMiddleware,
    XFrameOptionsMiddleware,
)


def with_page_middleware(view):
    """Run `view` (which answers, never raises) under PAGE_MIDDLEWARE unless the page handler ran it
    (the request has a session already). Only pages opened in a browser take this way: a few a day."""

    def run(request, *args, **kwargs):
        if hasattr(request, "session"):
            return view(request, *args, **kwargs)

        def get_response(request):
            return view(request, *args, **kwargs)

        for middleware in reversed(PAGE_MIDDLEWARE):
            get_response = middleware(get_response)
        return get_response(request)

    return run


class DXErrorMiddleware(MiddlewareMixin):
    """Answer a DXError raised by a view: JSON with its status for views marked answers_json (the API,
    page scripts) unless a browser opened the address itself (wants_page), else the 404 page for
    ResourceNotFound (missing and hidden alike) and the 403 page with the message for any other refusal."""

    def process_exception(self, request, exception):
        if not isinstance(exception, DXError):
            return None
        match = request.resolver_match
        if match is not None and getattr(match.func, "answers_json", False) and not wants_page(request):
            return error_response(exception)
        # Rendered as Django renders Http404 and PermissionDenied: handler404/403, logged once.
        if isinstance(exception, ResourceNotFound):
            return response_for_exception(request, Http404("Not found"))
        return response_for_exception(request, Forbidden(exception.message))
