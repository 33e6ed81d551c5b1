from django.apps import AppConfig


class DxwebConfig(AppConfig):
    name = "dxweb"
