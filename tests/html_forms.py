"""Reading a rendered form the way a browser would: which options and boxes are chosen."""

from __future__ import annotations

from html.parser import HTMLParser


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.select: str | None = None
        self.option: dict[str, str | None] | None = None
        self.options: dict[str, list[dict[str, str | None]]] = {}
        self.inputs: list[dict[str, str | None]] = []
        self.buttons: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "select":
            self.select = attributes.get("name")
        elif tag == "option" and self.select:
            self.option = {**attributes, "text": ""}
            self.options.setdefault(self.select, []).append(self.option)
        elif tag == "input":
            self.inputs.append(attributes)
        elif tag == "button":
            self.buttons.append(attributes)

    def handle_data(self, data: str) -> None:
        if self.option is not None:
            self.option["text"] = (self.option["text"] or "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self.select = None
        if tag in ("option", "select"):
            self.option = None


def read(page: str) -> _FormReader:
    reader = _FormReader()
    reader.feed(page)
    return reader


def options(page: str, name: str) -> list[dict[str, str | None]]:
    """The <option>s of the select called ``name``, their attributes and their "text"."""
    return read(page).options.get(name, [])


def selected_option(page: str, name: str) -> dict[str, str | None] | None:
    return next((o for o in options(page, name) if "selected" in o), None)


def checked_values(page: str, name: str) -> list[str | None]:
    return [i.get("value") for i in read(page).inputs if i.get("name") == name and "checked" in i]


def input_value(page: str, name: str) -> str | None:
    return next((i.get("value") for i in read(page).inputs if i.get("name") == name), None)
