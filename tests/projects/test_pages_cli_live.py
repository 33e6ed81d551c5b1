"""The CLI access page's commands, pasted into a shell, make the real dx client talk to the real server."""

import html
import http.cookiejar
import os
import re
import subprocess
import urllib.parse
import urllib.request

import pytest

from tests.live import BIN

pytestmark = pytest.mark.live


class Browser:
    """A cookie-keeping HTTP client that logs in and posts forms like a browser without scripts."""

    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def csrf(self):
        return next(c.value for c in self.jar if c.name == "csrftoken")

    def get(self, path):
        with self.opener.open(self.base + path, timeout=30) as response:
            return response.read().decode()

    def post(self, path, fields):
        """Post a form and follow its redirect; return (final URL, page)."""
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": self.csrf()}).encode()
        request = urllib.request.Request(self.base + path, data=data, headers={"Referer": self.base + path})
        with self.opener.open(request, timeout=30) as response:
            return response.url, response.read().decode()


def test_the_commands_on_the_cli_page_sign_dx_in(live, tmp_path):
    live.user("carol")
    browser = Browser(live.url)
    browser.get("/login/")
    browser.post("/login/", {"username": "carol", "password": "carol-password"})
    project_url, _ = browser.post("/", {"name": "from the web", "summary": ""})
    project = re.search(r"/projects/(project-\w+)/$", project_url).group(1)
    browser.post(f"/projects/{project}/folders/new/", {"folder": "/", "name": "raw"})
    _, page = browser.post("/cli/token/", {})
    env_block = re.search(r'<pre id="cmd-env">(.*?)</pre>', page, re.S).group(1)
    use_block = re.search(r'<pre id="cmd-use">(.*?)</pre>', page, re.S).group(1)
    script = "\n".join(html.unescape(re.sub(r"<[^>]+>", "", block)) for block in (env_block, use_block))
    assert "<TOKEN>" not in script and f"dx select {project}" in script

    env = {k: v for k, v in os.environ.items() if not k.startswith("DX_")}
    env.update(PATH=f"{BIN}:{env.get('PATH', '')}", DX_USER_CONF_DIR=str(tmp_path / "dxconf"))
    result = subprocess.run(["bash", "-ec", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["carol", f"Selected project {project}", "raw/"]
