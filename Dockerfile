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
#
# Two stages: the builder turns the source into a wheel and installs it into a
# virtual environment; the final stage gets only that environment, plus git
# (huge gists are read from a shallow `git clone`, docs/github.md §2), and runs as a
# non-root user. Every dependency (aiohttp, regex) ships manylinux wheels for
# CPython 3.11, so no compiler is needed in either stage.

FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gistscan ./gistscan

# setuptools runs in pip's isolated build environment and stays in this stage;
# pip and setuptools are then removed from the venv the final stage copies.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install /wheels/gistscan-*.whl \
 && /opt/venv/bin/pip uninstall --yes pip setuptools


FROM python:3.11-slim

LABEL org.opencontainers.image.title="gistscan" \
      org.opencontainers.image.description="Search a GitHub user's public gists for a regular expression; streams NDJSON." \
      org.opencontainers.image.licenses="MIT"

# git for the huge-gist path; nothing it merely recommends (no ssh, no less).
# `apt-get clean` drops the .debs and apt's ~75 MB package caches (*.bin), which
# a base without Docker's apt-clean hook would otherwise keep in this layer.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends git \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 gistscan \
 && useradd --system --uid 10001 --gid gistscan --create-home --home-dir /home/gistscan \
      --shell /usr/sbin/nologin gistscan

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GISTSCAN_API_URL=https://api.github.com

USER gistscan
WORKDIR /home/gistscan

EXPOSE 8080

# curl is not in the slim image: ask /healthz with the standard library.
# urlopen raises on anything but 2xx, so a failing check exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

CMD ["python", "-m", "gistscan", "serve", "--host", "0.0.0.0", "--port", "8080"]
