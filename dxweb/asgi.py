"""ASGI entry point: Django for pages, a lean Django handler for the API, Channels for websockets."""
import os
import re

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dxweb.settings")
django_asgi_app = get_asgi_application()

from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402

# API calls (/<class-or-id>/<method>, never a trailing slash), signed transfer URLs, and the
# benchmark baselines (which must take the same path as what they are compared with).
API_PATH = re.compile(r"^/(?:(?:system|[a-z]+(?:-[^/]+)?)/[A-Za-z_]+|transfer/.*|bench/.*)$")


class TokenAPIHandler(ASGIHandler):
    """Django without the page middleware, for callers that authenticate by token or signed URL.

    Sessions, CSRF, messages and static files mean nothing to the API, and each sync-only
    middleware costs a thread hop per request (bench/api.py measures the difference).
    """

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        get_response = self._get_response_async if is_async else self._get_response
        self._middleware_chain = convert_exception_to_response(get_response)


api_asgi_app = TokenAPIHandler()


async def http_application(scope, receive, send):
    app = api_asgi_app if API_PATH.match(scope["path"]) else django_asgi_app
    await app(scope, receive, send)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

import jobs.routing  # noqa: E402

websocket_urlpatterns = [*jobs.routing.websocket_urlpatterns]
if settings.DXWEB_BENCH_VIEWS:  # bench/logs.py's echo baseline (never in production)
    import bench.routing  # noqa: E402

    websocket_urlpatterns += bench.routing.websocket_urlpatterns

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
