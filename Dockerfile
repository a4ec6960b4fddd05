# The Cloud Run image: `gcloud builds submit --tag IMAGE` (or cloudbuild.yaml) builds it,
# service.yaml runs it. tests/platform/test_e2e_platforms.py runs this file's CMD, with its ENV and
# WORKDIR, exactly as the container would (there is no Docker engine in CI).

# Build stage: the full image of the same Python has the compiler that the one requirement
# published only as source needs (gunicorn_h1c, gunicorn's C HTTP parser). Everything is
# installed under /install and copied into the slim image, which keeps no compiler.
FROM python:3.13.5-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt .
RUN pip install --prefix=/install --requirement requirements.txt

# Pinned to a patch release of the App Engine runtime's Python (3.13), slim Debian.
FROM python:3.13.5-slim-bookworm

# No .pyc writes at run time (the code is compiled below, and the user cannot write
# here); logs reach Cloud Logging unbuffered; pip keeps no cache in the image.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, as the build stage installed them: this layer is rebuilt only when
# requirements.txt changes.
COPY --from=build /install /usr/local

COPY . .
# Compile once at build time: a cold start then imports without compiling.
RUN python -m compileall -q .

# Not root: the app needs to write nothing (logs go to stdout/stderr).
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin serving
USER 10001

# Cloud Run sets PORT (8080 unless service.yaml says otherwise); gunicorn.conf.py binds it.
ENV PORT=8080
EXPOSE 8080

# `exec` replaces the shell with gunicorn, so gunicorn is PID 1 and receives Cloud Run's
# SIGTERM itself: it stops accepting, finishes in-flight requests within
# GUNICORN_GRACEFUL_TIMEOUT (8 s, inside Cloud Run's 10 s), and exits.
CMD exec gunicorn -c gunicorn.conf.py main:app
