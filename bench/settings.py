"""Settings for `make bench` only: the production settings plus the bench URLconf."""

from __future__ import annotations

from connections_app.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
