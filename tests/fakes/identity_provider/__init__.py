"""A real OpenID Connect provider for the tests: django-oauth-toolkit with OIDC enabled, run as
its own small Django project in a subprocess (its own settings, URLs and SQLite database) and
served over https on 127.0.0.1 with the test CA (``tests/fakes/fake_idp.py`` starts it).

The people it knows are in ``people.json`` in its state directory, which the tests write:
``{"alice": {"password": …, "email": …, "email_verified": true, "groups": […], "amr": […]}}``.
"""
