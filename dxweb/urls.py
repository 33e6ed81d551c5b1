"""URL roots: pages, signed transfer URLs, and the DNAnexus-style API (no trailing slashes)."""

from functools import wraps

from django.conf import settings
from django.shortcuts import render
from django.urls import include, path, re_path

import jobs.api  # noqa: F401  (registers the API methods)
import jobs.apps.api  # noqa: F401
import jobs.workflows.api  # noqa: F401
import projects.api  # noqa: F401
import projects.records  # noqa: F401
from dxweb import api
from dxweb.errors import ResourceNotFound
from dxweb.middleware import wants_page, with_page_middleware
from projects import transfer

# An app is also reached by name and alias: /app-NAME/1.0.0/describe, /app-NAME/default/run.
API_RESOURCE = r"(?P<resource>system|app-[^/]+/[^/]+(?=/)|[a-z]+(?:-[^/]+)?)"


@with_page_middleware
def api_in_browser(request, resource, method):
    """An API route opened in a browser (/system/whoami typed in the address bar): a page that says it is
    the API, which takes POST requests with JSON (405), or the 404 page when there is no such route."""
    try:
        api.resolve(resource, method)
    except ResourceNotFound:
        return render(request, "404.html", {"request_path": request.path}, status=404)
    response = render(request, "404.html", {"request_path": request.path, "api_route": True}, status=405)
    response["Allow"] = "POST"
    return response


@wraps(api.dispatch)  # keeps answers_json and csrf_exempt
def api_route(request, resource, method):
    """A browser opening an API route gets a page (api_in_browser); any other request is an API call."""
    if wants_page(request):
        return api_in_browser(request, resource, method)
    return api.dispatch(request, resource, method)


urlpatterns = [
    path("", include("projects.urls")),
    path("", include("jobs.urls")),
    # Baselines for bench/ (a bare JSON view, a plain PUT/GET), only when DXWEB_BENCH_VIEWS is set.
    *([path("bench/", include("bench.urls"))] if settings.DXWEB_BENCH_VIEWS else []),
    path("transfer/up/<str:token>", transfer.upload, name="transfer-upload"),
    path("transfer/down/<str:token>/<str:filename>", transfer.download, name="transfer-download"),
    re_path(rf"^{API_RESOURCE}/(?P<method>[A-Za-z_]+)$", api_route, name="api"),
    re_path(r"^(?P<path>.*)$", api.not_found),
]
