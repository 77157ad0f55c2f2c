"""compose.yaml and deploy/nginx.conf, the README's fleet: parsed (PyYAML; `docker compose
config` is not available here) and checked against what the server reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gistscan.server import ENV, ServerConfig

REPO = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return document


def nginx() -> str:
    text = (REPO / "deploy" / "nginx.conf").read_text()
    return re.sub(r"#.*", "", text)  # directives only


def test_compose_has_redis_two_replicas_and_nginx() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "gistscan-1", "gistscan-2", "nginx"}
    redis = services["redis"]
    version = re.fullmatch(r"redis:(\d+)[.\w-]*", redis["image"])
    assert version is not None and int(version.group(1)) >= 7  # PEXPIRE ... GT
    command = redis["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert "ping" in redis["healthcheck"]["test"]


def image_extras() -> set[str]:
    """The extras the Dockerfile installs gistscan's wheel with: `...whl)[redis,speed]`."""
    found = re.search(r"gistscan-\*\.whl\)\[([a-z,]+)\]", (REPO / "Dockerfile").read_text())
    assert found, "the Dockerfile installs the gistscan wheel with its extras"
    return set(found.group(1).split(","))


def test_replicas_share_the_redis_service_and_read_only_real_settings() -> None:
    """Both replicas are built from this repository, point at the redis service, keep a
    reserve, take the token from the shell (never written down) and set only variables the
    server reads, with values it accepts."""
    services = compose()["services"]
    for name in ("gistscan-1", "gistscan-2"):
        replica = services[name]
        assert replica["build"] == "."
        assert "redis" in image_extras()  # the image has redis-py
        env = replica["environment"]
        assert re.fullmatch(r"redis://redis:6379/\d+", env["GISTSCAN_REDIS_URL"])
        assert int(env["GISTSCAN_RATELIMIT_RESERVE"]) > 0
        assert env["GITHUB_TOKEN"].startswith("${GITHUB_TOKEN")
        settings = {k: str(v) for k, v in env.items() if k != "GITHUB_TOKEN"}
        assert set(settings) <= set(ENV)
        config = ServerConfig.from_env(settings)
        assert config.redis_url == env["GISTSCAN_REDIS_URL"]
        assert "redis" in replica["depends_on"]
        # Start order only: a replica must start without Redis.
        assert isinstance(replica["depends_on"], list)
        # nginx's address is trusted to name clients; SIGTERM gets time to drain.
        subnets = [c["subnet"] for c in compose()["networks"]["default"]["ipam"]["config"]]
        assert config.trusted_proxies == tuple(subnets)
        grace = re.fullmatch(r"(\d+)s", replica["stop_grace_period"])
        assert grace is not None and int(grace.group(1)) >= config.drain_seconds


def test_nginx_balances_both_replicas_and_streams_unbuffered() -> None:
    """nginx mounts deploy/nginx.conf, sends to both replicas on the port they listen on
    (the image's PORT: 8080), never buffers a stream, and waits longer than a search may run."""
    services = compose()["services"]
    nginx_service = services["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in nginx_service["volumes"]
    assert set(nginx_service["depends_on"]) == {"gistscan-1", "gistscan-2"}
    conf = nginx()
    assert conf.count("{") == conf.count("}")
    upstream = re.search(r"upstream gistscan \{(.*?)\}", conf, re.S)
    assert upstream is not None
    servers = re.findall(r"server ([\w-]+):(\d+)", upstream.group(1))
    assert servers == [("gistscan-1", "8080"), ("gistscan-2", "8080")]
    assert re.search(r"^\s*PORT=8080\b", (REPO / "Dockerfile").read_text(), re.M)
    assert re.search(r"proxy_pass http://gistscan;", conf)
    assert re.search(r"proxy_buffering off;", conf)
    assert re.search(r"proxy_http_version 1\.1;", conf)
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", conf)
    assert read_timeout is not None
    deadline = ServerConfig().search_deadline
    assert deadline is not None and int(read_timeout.group(1)) > deadline
