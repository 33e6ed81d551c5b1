"""URL roots: pages, signed transfer URLs, and the DNAnexus-style API (no trailing slashes)."""

from django.conf import settings
from django.urls import include, path, re_path

import jobs.api  # noqa: F401  (registers the API methods)
import jobs.workflows.api  # noqa: F401
import projects.api  # noqa: F401
from dxweb import api
from projects import transfer

API_RESOURCE = r"(?P<resource>system|[a-z]+(?:-[^/]+)?)"

urlpatterns = [
    path("", include("projects.urls")),
    path("", include("jobs.urls")),
    # Baselines for bench/ (a bare JSON view, a plain PUT/GET), only when DXWEB_BENCH_VIEWS is set.
    *([path("bench/", include("bench.urls"))] if settings.DXWEB_BENCH_VIEWS else []),
    path("transfer/up/<str:token>", transfer.upload, name="transfer-upload"),
    path("transfer/down/<str:token>/<str:filename>", transfer.download, name="transfer-download"),
    re_path(rf"^{API_RESOURCE}/(?P<method>[A-Za-z_]+)$", api.dispatch, name="api"),
    re_path(r"^(?P<path>.*)$", api.not_found),
]
