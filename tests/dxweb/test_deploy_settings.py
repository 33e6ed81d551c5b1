"""Production settings: an https DXWEB_PUBLIC_URL turns on secure cookies, HSTS and the redirect to
https, so that `manage.py check --deploy` is clean; the embedded default (http on localhost) is unchanged."""

import json
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOWN = [
    "DEBUG",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
]


def environment(tmp_path, **overrides):
    """The test process's environment without any DXWEB_ setting, with a data directory of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DXWEB_", "DATABASE_URL", "REDIS_URL"))}
    env.update(DXWEB_DATA_DIR=str(tmp_path / "data"), DJANGO_SETTINGS_MODULE="dxweb.settings")
    env.update(overrides)
    return env


def production(tmp_path, **overrides):
    return environment(
        tmp_path,
        **{
            "DXWEB_DEBUG": "false",
            "DXWEB_SECRET_KEY": secrets.token_urlsafe(64),
            "DXWEB_PUBLIC_URL": "https://dx.example.org",
            "DXWEB_ALLOWED_HOSTS": "dx.example.org",
            "DXWEB_CSRF_TRUSTED_ORIGINS": "https://dx.example.org",
            "DXWEB_BEHIND_TLS_PROXY": "true",
            **overrides,
        },
    )


def manage(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_in(env):
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {SHOWN!r}}}))"
    )
    result = manage(env, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = manage(production(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output


def test_an_https_public_url_turns_on_secure_cookies_hsts_and_the_redirect(tmp_path):
    assert settings_in(production(tmp_path)) == {
        "DEBUG": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 365 * 24 * 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }
    shown = settings_in(production(tmp_path, DXWEB_HSTS_SECONDS="3600", DXWEB_HSTS_PRELOAD="true"))
    assert shown["SECURE_HSTS_SECONDS"] == 3600 and shown["SECURE_HSTS_PRELOAD"] is True
    assert settings_in(production(tmp_path, DXWEB_BEHIND_TLS_PROXY="false"))["SECURE_PROXY_SSL_HEADER"] is None


def test_the_embedded_default_stays_plain_http(tmp_path):
    """`make run`: http on 127.0.0.1, where secure cookies or a redirect to https would lock everyone out."""
    assert settings_in(environment(tmp_path)) == {
        "DEBUG": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
    }


PROBE = textwrap.dedent("""
    import asyncio, json
    from channels.testing import HttpCommunicator
    from dxweb.asgi import application

    async def get(method, path, proto=None):
        headers = [(b"host", b"dx.example.org")] + ([(b"x-forwarded-proto", proto.encode())] if proto else [])
        communicator = HttpCommunicator(application, method, path, headers=headers)
        response = await communicator.get_response(timeout=30)
        return {"status": response["status"],
                "headers": {k.decode().lower(): v.decode() for k, v in response["headers"]}}

    async def main():
        return {"page over https": await get("GET", "/login/", "https"),
                "page over http": await get("GET", "/login/"),
                "api over http": await get("POST", "/system/whoami")}

    print(json.dumps(asyncio.run(main())))
""")


def test_behind_the_tls_proxy_pages_are_https_only_and_the_api_is_not_redirected(tmp_path):
    """Through the real ASGI application: the proxy says https (X-Forwarded-Proto), pages answer with HSTS
    and Secure cookies; plain http pages redirect to https; API calls (jobs reach the API over http inside
    the worker host) are not redirected."""
    env = production(tmp_path)
    assert manage(env, "migrate", "-v0").returncode == 0
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    secure = seen["page over https"]
    assert secure["status"] == 200, seen
    assert secure["headers"]["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert "secure" in secure["headers"]["set-cookie"].lower().split("; ")
    plain = seen["page over http"]
    assert plain["status"] == 301 and plain["headers"]["location"] == "https://dx.example.org/login/"
    assert seen["api over http"]["status"] == 401


def test_production_hashes_passwords_with_a_slow_hasher(tmp_path):
    """Tests hash with MD5 for speed (tests/conftest.py); the server itself must not."""
    code = "from django.contrib.auth.hashers import make_password; print(make_password('secret').split('$')[0])"
    result = manage(production(tmp_path), "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] in {"pbkdf2_sha256", "argon2", "bcrypt_sha256", "scrypt"}
