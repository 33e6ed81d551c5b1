"""Baseline routes for bench/ (mounted under /bench/ only when DXWEB_BENCH_VIEWS is set)."""

from django.urls import path

from . import views

urlpatterns = [
    path("json", views.bare_json, name="bench-json"),
    path("launch-true", views.launch_true, name="bench-launch-true"),
    path("blob/<str:name>", views.blob, name="bench-blob"),
]
