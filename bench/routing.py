"""Websocket baselines for bench/ (routed only when DXWEB_BENCH_VIEWS is set, see dxweb/asgi.py)."""

from django.urls import re_path

from . import consumers

websocket_urlpatterns = [
    re_path(r"^bench/echo/websocket$", consumers.EchoConsumer.as_asgi()),
]
