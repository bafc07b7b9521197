"""`make demo` (bin/demo): set up, then the whole flow walked in headless Chromium, as printed."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connections_app.crypto import generate_key
from tests.conftest import CHROMIUM_ARGS, PASSWORD, chromium_executable

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Demo:
    process: subprocess.Popen[str]
    port: int
    kroger_port: int
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def printed(self, pattern: str) -> str:
        found = re.search(pattern, self.output)
        assert found, self.output
        return found.group(1)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "TEST_DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
        and not key.startswith(("KROGER_", "SITE_", "ALLOWED_"))
    }
    env.pop("REQUESTS_CA_BUNDLE", None)  # the demo trusts its own CA, not the tests'
    demo = Demo(
        process=subprocess.Popen(
            [sys.executable, "bin/demo"],
            cwd=ROOT,
            env={
                **env,
                "PORTAL_SKIP_DOTENV": "1",  # as a first `make demo` would write them to .env
                "SECRET_KEY": "demo-test-" + "y" * 50,
                "ENCRYPTION_KEYS": generate_key("demo"),
                "PORT": str(free_port()),
                "DEMO_KROGER_PORT": str(free_port()),
                "DEMO_DIR": str(tmp_path),
                "PYTHONUNBUFFERED": "1",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ),
        port=0,
        kroger_port=0,
    )
    ready = threading.Event()

    def read() -> None:
        assert demo.process.stdout is not None
        for line in demo.process.stdout:
            demo.lines.append(line.rstrip("\n"))
            if "Ctrl-C stops" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(120) and demo.process.poll() is None, demo.output
        demo.port = int(demo.printed(r"Portal\s+http://127\.0\.0\.1:(\d+)/"))
        demo.kroger_port = int(demo.printed(r"Stand-in\s+https://127\.0\.0\.1:(\d+)/"))
        yield demo
    finally:
        if demo.process.poll() is None:
            demo.process.send_signal(signal.SIGTERM)
            demo.process.wait(timeout=30)
        reader.join(timeout=5)


@pytest.mark.browser
def test_make_demo_walks_a_newcomer_through_the_whole_flow(browser: Any, demo: Demo) -> None:
    site = f"http://127.0.0.1:{demo.port}"
    spki = demo.printed(r"--ignore-certificate-errors-spki-list=(\S+)")
    # A browser that trusts the demo's stand-in by the key the demo printed, as step 1 says.
    executable = chromium_executable()
    assert executable is not None
    trusting = browser.browser_type.launch(
        executable_path=executable,
        args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki}"],
    )
    try:
        page = trusting.new_context(base_url=site).new_page()
        page.set_default_timeout(15_000)

        page.goto(f"https://127.0.0.1:{demo.kroger_port}/")
        assert "not Kroger" in page.locator("body").inner_text()

        page.goto("/accounts/signup/")
        page.get_by_label("Email").fill("newcomer@example.com")
        page.get_by_label("Password:", exact=True).fill(PASSWORD)
        page.get_by_label("Password (again)").fill(PASSWORD)
        page.get_by_role("button", name="Sign Up").click()
        page.wait_for_url(lambda url: "/accounts/signup/" not in url)

        page.goto("/connections/new/")
        page.get_by_label("Name your connection").fill("Weekly shop")
        page.locator("select[name=environment]").select_option("production")
        page.locator("select[name=client]").select_option(label="Demo app (local Kroger stand-in)")
        for scope in ("product.compact", "cart.basic:write"):
            page.locator(f"li[data-scope='{scope}'] input[type=checkbox]").check()
        page.get_by_role("button", name="Add selected scopes").click()
        page.get_by_role("button", name="Save & authorize").click()

        page.wait_for_url(re.compile(rf"https://127\.0\.0\.1:{demo.kroger_port}/v1/connect/"))
        consent = page.locator("body").inner_text()
        assert "Local Kroger stand-in, not Kroger." in consent
        page.get_by_role("button", name="Accept").click()

        page.wait_for_url(re.compile(r"/connections/[0-9a-f-]+/$"))
        page.get_by_text("is authorized and Online").wait_for()
    finally:
        trusting.close()

    # Step 5, as printed: the service key lists the connection and hands out its token.
    key = demo.printed(r"Bearer (kcp_[A-Za-z0-9_-]+)")
    listing = demo.printed(r'curl -fsS -H "Authorization: Bearer kcp_\S+" "(\S+/connections/)"\n')
    assert demo.printed(r'"(\S+/connections/)<id>/token"') == listing
    [connection] = get_json(listing, key)["connections"]
    assert (connection["name"], connection["status"]) == ("Weekly shop", "online")
    products = demo.printed(r'<id>/(kroger/[^"\s]+)"')
    found = get_json(f"{listing}{connection['id']}/{products}", key)
    assert found["data"][0]["description"] == "milk"
    token = get_json(f"{listing}{connection['id']}/token", key)
    assert token["access_token"].startswith("fk-access-")
    assert token["base_url"] == f"https://127.0.0.1:{demo.kroger_port}/v1/"

    # Ctrl-C stops both.
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(timeout=30) == 0
    assert not listening(demo.port) and not listening(demo.kroger_port)


def get_json(url: str, key: str) -> Any:
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.loads(answer.read())


def test_the_stand_in_needs_nothing_of_pytest() -> None:
    """bin/demo serves the tests' fake Kroger: it must import where pytest cannot."""
    script = "import sys; sys.modules['pytest'] = None; import tests.fakes.fake_kroger"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
