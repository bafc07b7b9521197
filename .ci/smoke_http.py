"""Smoke-test a running production-form portal over HTTP (called by .ci/smoke-production).

Usage: smoke_http.py PORT SITE_HOST ACCESS_LOG

Requests go to 127.0.0.1:PORT with the Host header of SITE_URL and, as a TLS-terminating
proxy would send it, ``X-Forwarded-Proto: https``. Every check prints one line; the first
failure stops the run with exit status 1.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent


class SmokeFailure(Exception):
    pass


class Response:
    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self.status = raw.status
        self.headers = raw.headers
        self.body = raw.read().decode("utf-8", errors="replace")

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    def cookies(self) -> SimpleCookie:
        jar: SimpleCookie = SimpleCookie()
        for line in self.headers.get_all("Set-Cookie") or []:
            jar.load(line)
        return jar

    def raw_cookie_lines(self) -> list[str]:
        return list(self.headers.get_all("Set-Cookie") or [])


class Portal:
    def __init__(self, port: int, host: str) -> None:
        self.port = port
        self.host = host

    def request(
        self,
        method: str,
        path: str,
        *,
        https: bool = True,
        headers: dict[str, str] | None = None,
        body: str | None = None,
    ) -> Response:
        sent = {"Host": self.host, **({"X-Forwarded-Proto": "https"} if https else {})}
        sent.update(headers or {})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            connection.request(method, path, body=body, headers=sent)
            return Response(connection.getresponse())
        finally:
            connection.close()


def check(condition: bool, what: str, detail: str = "") -> None:
    if not condition:
        raise SmokeFailure(f"{what}{': ' + detail if detail else ''}")
    print(f"  ok  {what}", flush=True)


def check_healthz(portal: Portal) -> None:
    response = portal.request("GET", "/healthz")
    check(response.status == 200, "/healthz answers 200", f"got {response.status}")
    check(
        json.loads(response.body) == {"status": "ok", "database": "ok", "encryption_keys": "ok"},
        "/healthz reports the database healthy",
        response.body[:200],
    )
    plain = portal.request("GET", "/healthz", https=False)
    check(plain.status == 200, "/healthz answers plain HTTP (no HTTPS redirect)", str(plain.status))


def check_docker_healthcheck(port: int) -> None:
    """Run the Dockerfile's HEALTHCHECK command itself against this server."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$", text, flags=re.MULTILINE)
    check(match is not None, "the Dockerfile has an exec-form HEALTHCHECK")
    assert match is not None
    command = json.loads(match.group(1))
    env = {**os.environ, "PORT": str(port)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)  # noqa: S603
    check(result.returncode == 0, "the Dockerfile's HEALTHCHECK passes", result.stderr[-500:])


def check_https_redirect(portal: Portal) -> None:
    response = portal.request("GET", "/accounts/login/", https=False)
    location = response.header("Location")
    check(
        response.status == 301 and location.startswith(f"https://{portal.host}/"),
        "plain HTTP is redirected to HTTPS",
        f"{response.status} {location}",
    )


def check_sign_in_page(portal: Portal) -> Response:
    response = portal.request("GET", "/accounts/login/")
    check(response.status == 200, "the sign-in page is served", str(response.status))
    hsts = response.header("Strict-Transport-Security")
    max_age = re.search(r"max-age=(\d+)", hsts)
    check(
        max_age is not None and int(max_age.group(1)) >= 31536000,
        "HSTS of at least a year",
        hsts,
    )
    check(response.header("X-Content-Type-Options") == "nosniff", "X-Content-Type-Options")
    check(response.header("Referrer-Policy") == "same-origin", "Referrer-Policy same-origin")
    check(response.header("X-Frame-Options") == "DENY", "X-Frame-Options DENY")
    csp = {
        part.split()[0]: part.split()[1:]
        for part in response.header("Content-Security-Policy").split(";")
        if part.strip()
    }
    check(csp.get("object-src") == ["'none'"], "CSP object-src 'none'", str(csp))
    check(csp.get("base-uri") == ["'none'"], "CSP base-uri 'none'", str(csp))
    script_src = csp.get("script-src", csp.get("default-src", []))
    check(
        script_src != [] and "'unsafe-inline'" not in script_src,
        "CSP script-src allows no inline script",
        str(script_src),
    )
    check("<script>" not in response.body, "the page has no inline script")
    lines = [line for line in response.raw_cookie_lines() if line.startswith("__Host-csrftoken=")]
    check(len(lines) == 1, "the CSRF cookie is named __Host-csrftoken", str(lines))
    check_host_cookie(lines[0], "the CSRF cookie")
    return response


def check_host_cookie(line: str, what: str) -> None:
    attributes = [part.strip().lower() for part in line.split(";")[1:]]
    check(
        "secure" in attributes
        and "path=/" in attributes
        and not any(a.startswith("domain=") for a in attributes)
        and "samesite=lax" in attributes,
        f"{what} is Secure, Path=/, host-only, SameSite=Lax",
        line.split("=", 1)[0] + "; " + "; ".join(attributes),
    )


def check_sign_up(portal: Portal, sign_in_page: Response) -> None:
    """The first account signs up: database writes, allauth's rate limits (the database cache)."""
    csrf_token = sign_in_page.cookies()["__Host-csrftoken"].value
    page = portal.request(
        "GET", "/accounts/signup/", headers={"Cookie": f"__Host-csrftoken={csrf_token}"}
    )
    check(page.status == 200, "the sign-up page is served", str(page.status))
    field = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    check(field is not None, "the sign-up form carries a CSRF token")
    assert field is not None
    password = secrets.token_urlsafe(16)
    body = urlencode(
        {
            "csrfmiddlewaretoken": field.group(1),
            "email": "first@example.com",
            "password1": password,
            "password2": password,
        }
    )
    response = portal.request(
        "POST",
        "/accounts/signup/",
        headers={
            "Cookie": f"__Host-csrftoken={csrf_token}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": f"https://{portal.host}",
            "Referer": f"https://{portal.host}/accounts/signup/",
        },
        body=body,
    )
    check(
        response.status == 302,
        "the first account signs up",
        f"{response.status} {response.body[:300]}",
    )
    lines = [line for line in response.raw_cookie_lines() if line.startswith("__Host-sessionid=")]
    check(len(lines) == 1, "the session cookie is named __Host-sessionid", str(lines))
    check_host_cookie(lines[0], "the session cookie")
    check("httponly" in lines[0].lower(), "the session cookie is HttpOnly")
    session = response.cookies()["__Host-sessionid"].value
    cookie = {"Cookie": f"__Host-sessionid={session}"}
    # Production requires a second factor of administrators (MFA_REQUIRED=editors): the first
    # account reaches nothing but its setup until it has one.
    home = portal.request("GET", "/", headers=cookie)
    check(
        home.status == 302 and home.header("Location").startswith("/accounts/2fa/"),
        "the signed-in administrator is sent to set up a second factor",
        f"{home.status} {home.header('Location')}",
    )
    setup = portal.request("GET", home.header("Location"), headers=cookie)
    check(setup.status == 200, "the second-factor setup page is served", str(setup.status))
    admin = portal.request("GET", "/admin/", headers=cookie)
    check(
        admin.status == 302 and admin.header("Location").startswith("/accounts/2fa/"),
        "the admin waits for the second factor too",
        f"{admin.status} {admin.header('Location')}",
    )


def check_static_file(portal: Portal, sign_in_page: Response) -> None:
    match = re.search(r'href="(/static/css/app\.[0-9a-f]{12}\.css)"', sign_in_page.body)
    check(match is not None, "the page links the stylesheet by a hashed name")
    assert match is not None
    response = portal.request("GET", match.group(1), headers={"Accept-Encoding": "gzip"})
    check(response.status == 200, f"{match.group(1)} is served", str(response.status))
    check(
        "immutable" in response.header("Cache-Control"),
        "the hashed file is cached forever",
        response.header("Cache-Control"),
    )
    check(response.header("Content-Encoding") == "gzip", "the hashed file is served compressed")


def check_not_found(portal: Portal) -> None:
    response = portal.request("GET", "/no-such-page/")
    check(response.status == 404, "an unknown page answers 404", str(response.status))
    for debug_text in ("URLconf", "Traceback", "DEBUG = True", "technical", "Django tried"):
        check(debug_text not in response.body, f"the 404 shows no debug detail ({debug_text!r})")


def check_access_log_hides_query(portal: Portal, access_log: Path) -> None:
    code, state = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    portal.request("GET", f"/oauth/callback/?code={code}&state={state}")
    time.sleep(1)  # gunicorn writes the access log line after the response
    log = access_log.read_text(encoding="utf-8", errors="replace")
    check("/oauth/callback/" in log, "the access log records the callback's path")
    check(code not in log and state not in log, "the access log holds no code or state")


def main() -> int:
    port, host, access_log = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    portal = Portal(port, host)
    try:
        check_healthz(portal)
        check_docker_healthcheck(port)
        check_https_redirect(portal)
        sign_in_page = check_sign_in_page(portal)
        check_static_file(portal, sign_in_page)
        check_not_found(portal)
        check_sign_up(portal, sign_in_page)
        check_access_log_hides_query(portal, access_log)
    except SmokeFailure as failure:
        print(f"FAIL {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
