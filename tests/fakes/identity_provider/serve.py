"""Run the test identity provider: ``python -m tests.fakes.identity_provider.serve``.

Reads ``IDP_STATE_DIR`` (holding the exported TLS certificate, the RS256 key and
``people.json``), ``IDP_CLIENT_ID``, ``IDP_CLIENT_SECRET`` and ``IDP_REDIRECT_URIS``
(space-separated); binds a free port on 127.0.0.1, prints it on one line once it can answer,
then serves until killed.
"""

from __future__ import annotations

import os
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from tests.fakes import tls


class Server(tls.TLSServerMixin, ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Handler(WSGIRequestHandler):
    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["HTTPS"] = "on"
        return environ

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    state = Path(os.environ["IDP_STATE_DIR"])
    tls.use_exported_server_cert(state / "server-chain.pem", state / "server-key.pem")
    server = Server(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    os.environ["IDP_ISSUER"] = f"https://127.0.0.1:{port}/o"
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.fakes.identity_provider.settings"

    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0)
    Application.objects.create(
        name="Kroger connections portal",
        client_id=os.environ["IDP_CLIENT_ID"],
        client_secret=os.environ["IDP_CLIENT_SECRET"],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=os.environ["IDP_REDIRECT_URIS"],
        algorithm=Application.RS256_ALGORITHM,
    )
    server.set_app(get_wsgi_application())
    print(port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
