"""The app API: /app/new, /app-xxxx/<method>, /app-NAME[/ALIAS]/<method> and /system/findApps."""

from dxweb.api import api_method


@api_method("system", "findApps")
def find_apps(principal, body):
    return {"results": [], "next": None}
