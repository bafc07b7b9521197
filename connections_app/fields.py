"""An encrypted model field for every stored secret (client secrets, tokens, PKCE verifiers).

The attribute on a model instance holds plaintext; the column holds a key-ring ciphertext
bound to ``<app>.<model>.<field>:<row code>``. Decryption is lazy (on first attribute access)
because it needs the row's public ``code``, which ``from_db_value`` does not see. Values can
only be written through ``Model.save()``: a ``QuerySet.update()`` with plaintext is refused,
so no code path can write a secret to the database unencrypted.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from connections_app.crypto import DecryptionError, get_key_ring


class Ciphertext(str):
    """A value as stored in the column; never shown as if it were the secret."""

    def __repr__(self) -> str:
        return "Ciphertext(…)"


class _EncryptedAttribute:
    def __init__(self, field: EncryptedTextField) -> None:
        self.field = field

    def __get__(self, instance: models.Model | None, owner: type) -> Any:
        if instance is None:
            return self
        if self.field.attname not in instance.__dict__:  # deferred with only()/defer()
            instance.refresh_from_db(fields=[self.field.attname])
        value = instance.__dict__[self.field.attname]
        if isinstance(value, Ciphertext):
            value = get_key_ring().decrypt(value, self.field.associated_data(instance))
            instance.__dict__[self.field.attname] = value
        return value

    def __set__(self, instance: models.Model, value: Any) -> None:
        instance.__dict__[self.field.attname] = "" if value is None else value


class EncryptedTextField(models.TextField):
    """Stores a string encrypted with the key ring; the owning model needs a ``code`` field."""

    description = "Text encrypted at rest (AES-256-GCM)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs["editable"] = kwargs.get("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("editable", None)
        return name, path, args, kwargs

    def contribute_to_class(
        self, cls: type[models.Model], name: str, private_only: bool = False
    ) -> None:
        super().contribute_to_class(cls, name, private_only=private_only)
        setattr(cls, self.attname, _EncryptedAttribute(self))

    def associated_data(self, instance: models.Model) -> str:
        code = getattr(instance, "code", None)
        if not code:
            raise ValueError(f"{type(instance).__name__} needs a code before storing secrets")
        meta = instance._meta
        return f"{meta.app_label}.{meta.model_name}.{self.name}:{code}"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        return Ciphertext(value) if value else ""

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        raw = model_instance.__dict__.get(self.attname, "")
        if isinstance(raw, Ciphertext) or not raw:
            return raw or ""
        return Ciphertext(get_key_ring().encrypt(raw, self.associated_data(model_instance)))

    def get_prep_value(self, value: Any) -> Any:
        if value and not isinstance(value, Ciphertext):
            raise TypeError(
                f"{self.name} is encrypted: set it on the instance and call save(), "
                "never QuerySet.update() or a raw value"
            )
        return str(value) if value else ""

    def stored_value(self, instance: models.Model) -> str:
        """What the column holds (or will hold) for this instance, for rotation and display."""
        return str(self.pre_save(instance, add=False))


UNREADABLE = "unreadable — enter it again"


def secret_state(instance: models.Model, name: str) -> str:
    """ "set", "not set" or "unreadable" (stored, but ENCRYPTION_KEYS cannot decrypt it),
    without raising: for pages, forms and the admin, which must work when the keys are wrong so
    that people can enter the secret again."""
    if name not in instance.__dict__:
        instance.refresh_from_db(fields=[name])
    if not instance.__dict__[name]:
        return "not set"
    try:
        getattr(instance, name)
    except DecryptionError:
        return "unreadable"
    return "set"
