"""What the sign-up pages say about the portal's accounts."""

from __future__ import annotations

from django import template

from connections_app.accounts import portal_is_empty

register = template.Library()


@register.simple_tag
def first_account() -> bool:
    """True until someone has signed up: that first account administers the portal."""
    return portal_is_empty()
