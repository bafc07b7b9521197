"""connections_app.kroger against the fake Kroger over real https."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.test import RequestFactory
from django.views.debug import ExceptionReporter

from connections_app import kroger
from connections_app.kroger import KrogerError
from tests.fakes.fake_kroger import FakeKroger

CLIENT_ID = "shopping-app-1234"
SECRET = "unit-secret-Hq2Lw9"
REDIRECT_URI = "https://portal.test/oauth/callback/"


@pytest.fixture
def fake(fake_kroger: FakeKroger) -> FakeKroger:
    fake_kroger.register_client(
        CLIENT_ID, SECRET, {"product.compact", "cart.basic:write", "profile.compact"}
    )
    return fake_kroger


def consent(fake: FakeKroger, *, scopes: list[str], verifier: str, state: str = "st") -> str:
    """Walk the fake's consent page as a shopper clicking Accept; return the code."""
    url = kroger.authorization_url(
        environment="production",
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT_URI,
        scopes=scopes,
        state=state,
        code_challenge=kroger.code_challenge(verifier),
    )
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    answer = requests.post(
        f"{fake.url}connect/oauth2/authorize",
        data={**query, "decision": "accept"},
        allow_redirects=False,
        timeout=5,
    )
    location = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert location["state"] == [state]
    return location["code"][0]


def exchange(code: str, verifier: str, **overrides: Any) -> kroger.TokenResponse:
    arguments = {
        "environment": "production",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        **overrides,
    }
    return kroger.exchange_code(**arguments)


def test_authorization_url_carries_every_parameter(settings: Any) -> None:
    url = kroger.authorization_url(
        environment="certification",
        client_id="app id",
        redirect_uri=REDIRECT_URI,
        scopes=["product.compact", "cart.basic:write"],
        state="the-state",
        code_challenge="challenge",
        banner="ralphs",
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        settings.KROGER_BASE_URLS["certification"] + "connect/oauth2/authorize"
    )
    assert parse_qs(parts.query) == {
        "response_type": ["code"],
        "client_id": ["app id"],
        "redirect_uri": [REDIRECT_URI],
        "scope": ["product.compact cart.basic:write"],
        "state": ["the-state"],
        "code_challenge": ["challenge"],
        "code_challenge_method": ["S256"],
        "banner": ["ralphs"],
    }


def test_authorization_url_leaves_out_an_empty_banner() -> None:
    url = kroger.authorization_url(
        environment="production",
        client_id="a",
        redirect_uri=REDIRECT_URI,
        scopes=["product.compact"],
        state="s",
        code_challenge="c",
    )
    assert "banner" not in parse_qs(urlsplit(url).query)


def test_code_challenge_is_rfc_7636_s256() -> None:
    # The example of RFC 7636 appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert kroger.code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert len(kroger.new_code_verifier()) >= 43
    assert len(kroger.new_state()) >= 43


def test_it_exchanges_a_code_with_basic_auth_verifier_and_redirect_uri(fake: FakeKroger) -> None:
    verifier = kroger.new_code_verifier()
    code = consent(fake, scopes=["product.compact", "cart.basic:write"], verifier=verifier)

    tokens = exchange(code, verifier)

    assert tokens.access_token in fake.access_tokens
    assert tokens.refresh_token in fake.refresh_tokens
    assert tokens.expires_in == 1800
    assert tokens.scope == "product.compact cart.basic:write"
    call = fake.token_calls[-1]
    assert call["basic_auth"] is True
    assert call["client_id"] == CLIENT_ID
    assert "client_secret" not in call
    assert call["redirect_uri"] == REDIRECT_URI
    assert call["code_verifier"] == verifier


def test_token_response_repr_hides_the_tokens(fake: FakeKroger) -> None:
    verifier = kroger.new_code_verifier()
    tokens = exchange(consent(fake, scopes=["product.compact"], verifier=verifier), verifier)
    assert tokens.access_token not in repr(tokens)
    assert str(tokens.refresh_token) not in repr(tokens)


def test_a_code_works_once(fake: FakeKroger) -> None:
    verifier = kroger.new_code_verifier()
    code = consent(fake, scopes=["product.compact"], verifier=verifier)
    exchange(code, verifier)
    with pytest.raises(KrogerError) as caught:
        exchange(code, verifier)
    assert caught.value.kind == "invalid_grant"
    assert "authorization code" in caught.value.message


def test_a_wrong_verifier_is_refused(fake: FakeKroger) -> None:
    verifier = kroger.new_code_verifier()
    code = consent(fake, scopes=["product.compact"], verifier=verifier)
    with pytest.raises(KrogerError) as caught:
        exchange(code, kroger.new_code_verifier())
    assert caught.value.kind == "invalid_grant"


def test_a_different_redirect_uri_is_reported_as_such(fake: FakeKroger) -> None:
    verifier = kroger.new_code_verifier()
    code = consent(fake, scopes=["product.compact"], verifier=verifier)
    with pytest.raises(KrogerError) as caught:
        exchange(code, verifier, redirect_uri="https://portal.test/oauth/callback")
    assert caught.value.kind == "redirect_uri"
    assert "redirect URI registered" in caught.value.message


def test_a_wrong_secret_is_invalid_client(fake: FakeKroger) -> None:
    verifier = kroger.new_code_verifier()
    code = consent(fake, scopes=["product.compact"], verifier=verifier)
    with pytest.raises(KrogerError) as caught:
        exchange(code, verifier, client_secret="wrong-secret-value")
    error = caught.value
    assert (error.kind, error.status, error.transient, error.grant_dead) == (
        "invalid_client",
        401,
        False,
        False,
    )
    assert "client secret" in error.message
    assert "Production environment" in error.message
    assert "wrong-secret-value" not in error.message


def test_refresh_tokens_rotate_and_the_old_one_is_dead(fake: FakeKroger) -> None:
    _, refresh = fake.issue_tokens(CLIENT_ID, ["cart.basic:write"])
    new = kroger.refresh_token(
        environment="production", client_id=CLIENT_ID, client_secret=SECRET, refresh_token=refresh
    )
    assert new.refresh_token and new.refresh_token != refresh
    assert fake.token_calls[-1]["basic_auth"] is True

    with pytest.raises(KrogerError) as caught:
        kroger.refresh_token(
            environment="production",
            client_id=CLIENT_ID,
            client_secret=SECRET,
            refresh_token=refresh,
        )
    assert caught.value.kind == "invalid_grant"
    assert caught.value.status == 400
    assert caught.value.grant_dead
    assert "Authorize the connection again" in caught.value.message


def test_client_credentials_get_a_token_without_refresh_token(fake: FakeKroger) -> None:
    tokens = kroger.client_credentials(
        environment="certification",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        scopes=["product.compact"],
    )
    assert tokens.refresh_token is None
    assert fake.token_calls[-1]["grant_type"] == "client_credentials"
    assert fake.token_calls[-1]["scope"] == "product.compact"


def test_client_credentials_refuse_shopper_scopes(fake: FakeKroger) -> None:
    with pytest.raises(KrogerError) as caught:
        kroger.client_credentials(
            environment="production",
            client_id=CLIENT_ID,
            client_secret=SECRET,
            scopes=["cart.basic:write"],
        )
    assert caught.value.kind == "invalid_scope"
    assert "scopes assigned to the app" in caught.value.message


@pytest.mark.parametrize(
    ("failure", "kind", "hint", "transient"),
    [
        ("500", "server", "server error", True),
        ("temporarily_unavailable", "server", "could not issue a token just now", True),
        ("server_error", "server", "could not issue a token just now", True),
        ("timeout", "timeout", "did not answer within 2 seconds", True),
        ("garbage", "garbage", "not JSON", True),
        ("invalid_grant", "invalid_grant", "refresh token", False),
        ("invalid_client", "invalid_client", "client secret", False),
        ("invalid_scope", "invalid_scope", "scopes assigned to the app", False),
        ("redirect_uri", "redirect_uri", "redirect URI registered", False),
    ],
)
def test_each_token_failure_has_a_kind_and_a_message(
    fake: FakeKroger, failure: str, kind: str, hint: str, transient: bool
) -> None:
    _, refresh = fake.issue_tokens(CLIENT_ID, ["cart.basic:write"])
    fake.fail_token(failure)
    with pytest.raises(KrogerError) as caught:
        kroger.refresh_token(
            environment="production",
            client_id=CLIENT_ID,
            client_secret=SECRET,
            refresh_token=refresh,
        )
    assert caught.value.kind == kind
    assert hint in caught.value.message
    assert caught.value.transient is transient
    assert caught.value.grant_dead is (kind == "invalid_grant")
    assert refresh not in caught.value.message


def test_an_unreachable_kroger_is_a_network_error(settings: Any) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.KROGER_BASE_URLS = {"production": f"https://127.0.0.1:{port}/v1/"}
    with pytest.raises(KrogerError) as caught:
        kroger.client_credentials(
            environment="production", client_id="a", client_secret="b", scopes=[]
        )
    assert caught.value.kind == "network"
    assert caught.value.transient


@pytest.mark.parametrize("url", ["http://api.kroger.example/v1/", "http://127.0.0.1:9/v1/"])
def test_plain_http_is_refused_even_for_a_loopback_host(settings: Any, url: str) -> None:
    settings.KROGER_BASE_URLS = {"production": url}
    with pytest.raises(KrogerError) as caught:
        kroger.client_credentials(
            environment="production", client_id="a", client_secret="b", scopes=[]
        )
    assert "https://" in caught.value.message


def test_a_kroger_whose_certificate_no_trusted_ca_signed_is_not_sent_secrets(
    fake: FakeKroger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS verification really runs: without the test CA in the bundle the fake is refused."""
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with pytest.raises(KrogerError) as caught:
        kroger.client_credentials(
            environment="production", client_id=CLIENT_ID, client_secret=SECRET, scopes=[]
        )
    assert caught.value.kind == "network"
    assert fake.token_calls == []


def test_rate_limit_is_transient(fake: FakeKroger) -> None:
    access, _ = fake.issue_tokens(CLIENT_ID, ["product.compact"])
    fake.fail_api(429)
    with pytest.raises(KrogerError) as caught:
        kroger.get_locations(environment="production", access_token=access)
    assert caught.value.kind == "rate_limited"
    assert caught.value.transient


def test_api_endpoints_need_a_valid_bearer_token(fake: FakeKroger) -> None:
    access, _ = fake.issue_tokens(CLIENT_ID, ["product.compact", "profile.compact"])
    assert kroger.get_profile(environment="production", access_token=access)["data"]["id"]
    locations = kroger.get_locations(environment="production", access_token=access)
    assert locations["data"][0]["zipCode"] == "45202"
    assert kroger.get_products(environment="production", access_token=access)["data"]
    assert fake.api_calls == ["identity/profile", "locations", "products"]

    with pytest.raises(KrogerError) as caught:
        kroger.get_locations(environment="production", access_token="not-a-token")
    assert caught.value.kind == "unauthorized"

    fake.expire_access_tokens()
    with pytest.raises(KrogerError) as caught:
        kroger.get_locations(environment="production", access_token=access)
    assert caught.value.kind == "unauthorized"


def test_profile_without_its_scope_is_forbidden(fake: FakeKroger) -> None:
    access, _ = fake.issue_tokens(CLIENT_ID, ["product.compact"])
    with pytest.raises(KrogerError) as caught:
        kroger.get_profile(environment="production", access_token=access)
    assert caught.value.kind == "forbidden"
    assert "scope" in caught.value.message


def test_failures_are_logged_without_secrets(
    fake: FakeKroger, caplog: pytest.LogCaptureFixture
) -> None:
    _, refresh = fake.issue_tokens(CLIENT_ID, ["cart.basic:write"])
    caplog.set_level(logging.DEBUG)
    for failure in ("invalid_grant", "garbage", "500"):
        fake.fail_token(failure)
        with pytest.raises(KrogerError):
            kroger.refresh_token(
                environment="production",
                client_id=CLIENT_ID,
                client_secret=SECRET,
                refresh_token=refresh,
            )
    assert "Kroger call failed: kind=invalid_grant" in caplog.text
    assert refresh not in caplog.text
    assert SECRET not in caplog.text


# --- Token lifetimes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": "a"},
        {"access_token": "a", "expires_in": 0},
        {"access_token": "a", "expires_in": -60},
        {"access_token": "a", "expires_in": "-60"},
        {"access_token": "a", "expires_in": "soon"},
        {"access_token": "a", "expires_in": 1800.5},
        {"access_token": "a", "expires_in": True},
        {"access_token": "a", "expires_in": None},
    ],
)
def test_a_token_without_a_positive_integer_lifetime_is_garbage(body: dict[str, Any]) -> None:
    with pytest.raises(KrogerError) as caught:
        kroger._token_response("production", body, kroger.REFRESH)
    assert caught.value.kind == "garbage" and caught.value.transient
    assert "expires_in" in caught.value.message


@pytest.mark.parametrize("expires_in", [1, 60, "1800"])
def test_a_positive_lifetime_is_kept_however_short(expires_in: int | str) -> None:
    body = {"access_token": "a", "expires_in": expires_in}
    assert kroger._token_response("production", body, kroger.REFRESH).expires_in == int(expires_in)


# --- Secrets that cannot travel, and error reports -------------------------------------------


def test_a_client_secret_http_basic_cannot_carry_is_refused_as_invalid_client(
    fake: FakeKroger,
) -> None:
    with pytest.raises(KrogerError) as caught:
        kroger.client_credentials(
            environment="production",
            client_id=CLIENT_ID,
            client_secret="unit-secret-€",
            scopes=["product.compact"],
        )
    assert caught.value.kind == "invalid_client"
    assert "Re-enter the client ID and secret" in caught.value.message
    assert "€" not in caught.value.message
    assert fake.token_calls == []


# Made at run time: the report quotes source lines, which must not contain the values.
REPORT_SECRET = secrets.token_urlsafe(16)
REPORT_TOKEN = secrets.token_urlsafe(16)
REPORT_VERIFIER = secrets.token_urlsafe(48)


@pytest.mark.parametrize(
    "call",
    [
        lambda: kroger.exchange_code(
            environment="production",
            client_id=CLIENT_ID,
            client_secret=REPORT_SECRET,
            code=REPORT_TOKEN,
            redirect_uri=REDIRECT_URI,
            code_verifier=REPORT_VERIFIER,
        ),
        lambda: kroger.refresh_token(
            environment="production",
            client_id=CLIENT_ID,
            client_secret=REPORT_SECRET,
            refresh_token=REPORT_TOKEN,
        ),
        lambda: kroger.client_credentials(
            environment="production", client_id=CLIENT_ID, client_secret=REPORT_SECRET, scopes=[]
        ),
        lambda: kroger.get_profile(environment="production", access_token=REPORT_TOKEN),
    ],
    ids=["exchange_code", "refresh_token", "client_credentials", "get_profile"],
)
def test_an_error_report_of_a_crash_inside_a_kroger_call_shows_no_secret(
    call: Any, fake: FakeKroger, settings: Any
) -> None:
    # The crash happens inside the call, below every frame that holds the secrets: the
    # request's timeout setting has gone missing.
    del settings.KROGER_TIMEOUT_SECONDS
    request = RequestFactory().get("/api/v1/connections/")
    try:
        call()
    except AttributeError:
        html = ExceptionReporter(request, *sys.exc_info()).get_traceback_html()
    else:
        pytest.fail("the call did not crash")

    assert "KROGER_TIMEOUT_SECONDS" in html and "_send" in html  # the crash is reported
    for secret in (REPORT_SECRET, REPORT_TOKEN, REPORT_VERIFIER):
        assert secret not in html


def test_an_error_report_of_a_crash_while_reading_krogers_answer_shows_no_secret(
    fake: FakeKroger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer is read inside requests-oauthlib's frames, which hold the request's body,
    the credentials and the answer itself: all hidden."""
    _, refresh = fake.issue_tokens(CLIENT_ID, ["cart.basic:write"])

    def crash(value: Any) -> int:
        raise RuntimeError("a bug while reading the answer")

    monkeypatch.setattr(kroger, "_expires_in", crash)
    request = RequestFactory().get("/api/v1/connections/")
    with pytest.raises(RuntimeError) as caught:
        kroger.refresh_token(
            environment="production",
            client_id=CLIENT_ID,
            client_secret=SECRET,
            refresh_token=refresh,
        )
    # From the portal's frame down: this test's own frame holds the fake, secrets and all.
    below = caught.tb.tb_next
    html = ExceptionReporter(request, caught.type, caught.value, below).get_traceback_html()

    assert "a bug while reading the answer" in html and "oauth2_session.py" in html
    assert len(fake.issued) == 4  # the seeded pair and the new pair Kroger answered with
    for secret in (SECRET, *fake.issued):
        assert secret not in html


# --- Every answer the token endpoint may give, through oauthlib ------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "hint"),
    [
        (429, {}, "rate_limited", "rate limit for this app is spent (HTTP 429)"),
        (503, "<h1>Service Unavailable</h1>", "server", "server error (HTTP 503)"),
        (302, "", "garbage", "sent a redirect (HTTP 302)"),
        (200, "<html>Please enable JavaScript</html>", "garbage", "not JSON (HTTP 200)"),
        (200, [], "garbage", "not JSON (HTTP 200)"),
        (200, {"token_type": "bearer", "expires_in": 1800}, "garbage", "without an access token"),
        (200, {"error": "invalid_grant"}, "invalid_grant", "Kroger refused the refresh token"),
        (400, {"error": "invalid_client"}, "invalid_client", "Check the client secret"),
        (401, {}, "invalid_client", "Check the client secret"),
        (403, {}, "forbidden", "Kroger refused the request (HTTP 403)"),
        (
            400,
            {"error": "unauthorized_client"},
            "error",
            "does not allow this app to use this grant type",
        ),
        (
            400,
            {"error": "temporarily_unavailable", "error_description": "Try later"},
            "server",
            "just now (temporarily_unavailable, HTTP 400). The portal tries again in a few "
            "minutes. Kroger said: Try later",
        ),
        (400, {"error": "server_error"}, "server", "just now (server_error, HTTP 400)"),
        (400, {"error": "no_such_error"}, "error", "no_such_error (HTTP 400)"),
        (400, {"message": "no"}, "error", "Kroger refused the token request: HTTP 400."),
    ],
)
def test_each_answer_of_the_token_endpoint_has_a_kind_and_a_message(
    fake: FakeKroger, status: int, body: Any, kind: str, hint: str
) -> None:
    if status == 302:
        fake.reply_token(302, body, headers={"Location": f"{fake.url}connect/oauth2/token"})
    else:
        fake.reply_token(status, body)
    _, refresh = fake.issue_tokens(CLIENT_ID, ["cart.basic:write"])
    with pytest.raises(KrogerError) as caught:
        kroger.refresh_token(
            environment="production",
            client_id=CLIENT_ID,
            client_secret=SECRET,
            refresh_token=refresh,
        )
    assert (caught.value.kind, caught.value.status) == (kind, status)
    assert hint in caught.value.message
    # Only invalid_grant loses the grant; a 400 that says anything else leaves it to retry.
    assert caught.value.grant_dead is (kind == "invalid_grant")
    assert len(fake.token_calls) == 1  # a redirect is not followed


def test_an_answer_the_portal_accepts_is_kept_where_oauthlib_cannot_read_it(
    fake: FakeKroger,
) -> None:
    # oauthlib cannot split a numeric scope; the portal ignores it and keeps the new tokens.
    body = {"access_token": "new-a", "expires_in": 1800, "refresh_token": "new-r", "scope": 5}
    fake.reply_token(200, body)
    tokens = kroger.refresh_token(
        environment="production", client_id=CLIENT_ID, client_secret=SECRET, refresh_token="r"
    )
    assert (tokens.access_token, tokens.refresh_token, tokens.scope) == ("new-a", "new-r", None)


def test_a_refresh_answer_without_a_refresh_token_says_so(fake: FakeKroger) -> None:
    """requests-oauthlib would put the old refresh token back in; the portal keeps that
    decision (models keep the stored one) and reports what Kroger sent."""
    fake.reply_token(200, {"access_token": "new-a", "token_type": "bearer", "expires_in": 60})
    tokens = kroger.refresh_token(
        environment="production", client_id=CLIENT_ID, client_secret=SECRET, refresh_token="r"
    )
    assert tokens.refresh_token is None
    assert tokens.expires_in == 60


@pytest.mark.parametrize(
    "call",
    [
        lambda: kroger.authorization_url(
            environment="production",
            client_id=CLIENT_ID,
            redirect_uri=REDIRECT_URI,
            scopes=["product.compact"],
            state="s",
            code_challenge="c",
        ),
        lambda: kroger.exchange_code(
            environment="production",
            client_id=CLIENT_ID,
            client_secret=SECRET,
            code="c",
            redirect_uri=REDIRECT_URI,
            code_verifier="v" * 43,
        ),
        lambda: kroger.refresh_token(
            environment="production", client_id=CLIENT_ID, client_secret=SECRET, refresh_token="r"
        ),
        lambda: kroger.get_products(environment="production", access_token="a"),
    ],
    ids=["authorization_url", "exchange_code", "refresh_token", "get_products"],
)
@pytest.mark.parametrize("portal_checks", [True, False], ids=["portal", "oauthlib alone"])
def test_plain_http_is_refused_before_anything_is_sent(
    call: Any,
    portal_checks: bool,
    fake: FakeKroger,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fake's own port, spoken to in plain http: nothing may reach it.
    http_url = fake.url.replace("https://", "http://")
    settings.KROGER_BASE_URLS = {"production": http_url}
    if not portal_checks:  # oauthlib's own https check, with nothing switching it off
        monkeypatch.setattr(kroger, "_base_url", lambda environment: http_url)
    with pytest.raises(KrogerError) as caught:
        call()
    assert caught.value.kind == "error"
    assert "must use https://" in caught.value.message
    assert fake.token_calls == [] and fake.api_calls == []


def test_nothing_switches_off_oauthlibs_https_check() -> None:
    name = "OAUTHLIB_" + "INSECURE_TRANSPORT"  # spelled apart so this file does not match
    assert name not in os.environ
    root = Path(__file__).resolve().parent.parent
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(tracked) > 50
    files = [root / path for path in tracked if (root / path).is_file()]
    assert [file for file in files if name in file.read_text(errors="replace")] == []
