"""Every page answers 405, naming the methods it serves, to a method it does not serve."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app.models import Connection, OAuthClient, ServiceKey

pytestmark = pytest.mark.django_db

FORM_PAGES = [
    "/clients/new/",
    "/clients/{client}/edit/",
    "/clients/{client}/delete/",
    "/connections/new/",
    "/connections/{connection}/edit/",
    "/connections/{connection}/delete/",
    "/connections/{connection}/disconnect/",
    "/service-keys/new/",
    "/service-keys/{key}/revoke/",
]
READ_PAGES = ["/", "/clients/", "/connections/{connection}/", "/service-keys/", "/service-api/"]
ACTIONS = [
    "/connections/{connection}/authorize/",
    "/connections/{connection}/test/",
    "/connections/{connection}/refresh/",
]


@pytest.fixture
def urls(connection: Connection, oauth_client: OAuthClient) -> dict[str, str]:
    key, _ = ServiceKey.create_key(name="Shop", all_connections=True)
    return {
        "client": str(oauth_client.code),
        "connection": str(connection.code),
        "key": str(key.code),
    }


def request(client: Any, method: str, path: str) -> Any:
    return getattr(client, method.lower())(path)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("page", FORM_PAGES + READ_PAGES + ACTIONS)
def test_it_answers_405_to_a_method_no_page_serves(
    client: Any, admin_user: Any, urls: dict[str, str], page: str, method: str
) -> None:
    client.force_login(admin_user)
    response = request(client, method, page.format(**urls))
    assert response.status_code == 405
    assert response["Allow"]


@pytest.mark.parametrize("page", READ_PAGES)
def test_a_page_without_a_form_answers_405_to_post(
    client: Any, admin_user: Any, urls: dict[str, str], page: str
) -> None:
    client.force_login(admin_user)
    response = client.post(page.format(**urls))
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("page", FORM_PAGES + READ_PAGES)
def test_pages_still_answer_get_and_head(
    client: Any, admin_user: Any, urls: dict[str, str], page: str
) -> None:
    client.force_login(admin_user)
    assert client.get(page.format(**urls)).status_code == 200
    assert client.head(page.format(**urls)).status_code == 200
