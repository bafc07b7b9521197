# The portal's image. One image, two commands: bin/docker-web (migrate, then gunicorn) and
# bin/docker-worker (the token worker). Configuration comes from the environment at run time
# (see .env.example and the README's "Deploy" section); nothing secret is baked in.

# Builder: install the pinned dependencies, as wheels, into a virtual environment.
FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --only-binary=:all: --requirement requirements.txt

# Final image: the virtual environment and the portal's code, run by an unprivileged user.
FROM python:3.11.14-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORTAL_SKIP_DOTENV=1 \
    PORT=8000
RUN groupadd --system --gid 10001 portal \
    && useradd --system --uid 10001 --gid portal --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin portal
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY manage.py ./
COPY connections_app ./connections_app
COPY templates ./templates
COPY static ./static
COPY bin/docker-web bin/docker-worker ./bin/
# Hashed, compressed static files for whitenoise. The placeholder secrets exist only for this
# command, which needs settings that load; the image's environment never holds them.
RUN DEBUG=false \
    SECRET_KEY=collectstatic-at-build-time-only-never-used-to-sign-anything \
    ENCRYPTION_KEYS=build:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA \
    SITE_URL=https://build.invalid \
    python manage.py collectstatic --noinput
USER 10001:10001
EXPOSE 8000
# /healthz answers only to a host the portal serves, so the check sends SITE_URL's host.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.parse as p, urllib.request as r; r.urlopen(r.Request('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', headers={'Host': p.urlsplit(os.environ['SITE_URL']).netloc}), timeout=4)"]
CMD ["bin/docker-web"]
