# gistscan's HTTP server in a container.
#
#   docker build -t gistscan .
#   docker run --rm -p 8080:8080 -e GITHUB_TOKEN gistscan
#
# Runtime environment (read by the app, never baked into the image):
#   GITHUB_TOKEN      optional; sent as `Authorization: Bearer …` to the API host only.
#                     Without it GitHub allows 60 API requests per hour per IP address.
#                     Pass it at run time (-e GITHUB_TOKEN, or a secret of your platform).
#   GISTSCAN_API_URL  GitHub API root; default https://api.github.com (set below).
#   HOST, PORT        where the server listens (0.0.0.0 and 8080, set below).
#   GISTSCAN_*        limits, drain, logs: see the README's "Operating gistscan".
#
# Stopping: SIGTERM drains (running searches end with their summary) within
# GISTSCAN_SHUTDOWN_TIMEOUT, by default the search deadline + 5 s = 65 s, so give the
# container that long: `docker stop -t 70`, compose `stop_grace_period: 70s`,
# Kubernetes `terminationGracePeriodSeconds: 70`.
#
# Two stages: the builder turns the source into a wheel and installs it into a
# virtual environment; the final stage gets only that environment, plus git
# (huge gists are read from a shallow `git clone`, docs/github.md §2), and runs as a
# non-root user, under tini (PID 1 reaps the helpers git leaves behind and passes
# signals on). Every dependency (aiohttp, regex, orjson, ...) ships manylinux wheels for
# CPython 3.11, so no compiler is needed in either stage.

FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gistscan ./gistscan

# With the `redis` extra (redis-py, pure Python): a replica of a fleet shares its cache
# through Redis when GISTSCAN_REDIS_URL is set (compose.yaml); without it, it is not imported.
# With the `speed` extra (numpy, google-re2; binary wheels): the scanner's literal prefilter
# and newline counting at memory speed. On a server CPU is the capacity, so the image has it.
# setuptools runs in pip's isolated build environment and stays in this stage;
# pip and setuptools are then removed from the venv the final stage copies.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install "$(echo /wheels/gistscan-*.whl)[redis,speed]" \
 && /opt/venv/bin/pip uninstall --yes pip setuptools


FROM python:3.11-slim

LABEL org.opencontainers.image.title="gistscan" \
      org.opencontainers.image.description="Search a GitHub user's public gists for a regular expression; streams NDJSON." \
      org.opencontainers.image.licenses="MIT"

# git for the huge-gist path; nothing it merely recommends (no ssh, no less). tini as
# PID 1: git's helper processes are reaped, and SIGTERM reaches the server.
# `apt-get clean` drops the .debs and apt's ~75 MB package caches (*.bin), which
# a base without Docker's apt-clean hook would otherwise keep in this layer.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends git tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 gistscan \
 && useradd --system --uid 10001 --gid gistscan --create-home --home-dir /home/gistscan \
      --shell /usr/sbin/nologin gistscan

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GISTSCAN_API_URL=https://api.github.com \
    HOST=0.0.0.0 \
    PORT=8080

USER gistscan
WORKDIR /home/gistscan

EXPOSE 8080

# curl is not in the slim image: ask /healthz (liveness) with the standard library, on
# the port the server listens on. urlopen raises on anything but 2xx, so a failing check
# exits non-zero. (A load balancer asks /readyz: 503 while the server drains.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
# HOST and PORT above say where: `-e PORT=9000` moves it.
CMD ["python", "-m", "gistscan", "serve"]
