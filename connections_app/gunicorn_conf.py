"""gunicorn's configuration for the portal (``gunicorn -c python:connections_app.gunicorn_conf``).

Sizes come from the environment (see ``.env.example``). Logs go to stdout; the access log
records the path without its query string, because the OAuth callback carries ``code`` and
``state`` there, and gunicorn's own error lines pass through the same redaction as Django's.
"""

from __future__ import annotations

import logging
import os

from connections_app.logging import RedactSecretsFilter


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number") from None


bind = f"{os.environ.get('BIND_ADDRESS', '0.0.0.0').strip()}:{_env_int('PORT', 8000)}"  # noqa: S104
workers = _env_int("WEB_CONCURRENCY", 2)
threads = _env_int("WEB_THREADS", 4)
timeout = _env_int("WEB_TIMEOUT", 30)
graceful_timeout = timeout
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108

accesslog = "-"
errorlog = "-"
# %(U)s is the path alone; %(r)s, %(q)s and the referer %(f)s could carry `code` and `state`.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'

for _name in ("gunicorn.error", "gunicorn.access"):
    logging.getLogger(_name).addFilter(RedactSecretsFilter())
