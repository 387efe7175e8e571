"""The production compose file and Dockerfile wire the stack the brief describes.

Static checks on docker-compose.yml (anchors resolved by yaml.safe_load, `${VAR:-default}`
resolved to its default as compose would with an empty environment, `${VAR:?message}` to
the value given for it, or refused as compose refuses) and on the Dockerfile; plus
`docker compose config -q` when a compose-capable docker client is installed.
"""

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"

# Subcommands of the `casebook` CLI (cli/main.py, entry point in pyproject [project.scripts])
# that a container may run. Keep in step with the CLI when a long-running command is added.
CLI_SUBCOMMANDS = {"api", "worker", "migrate", "dev"}

TEMPORAL_FRONTEND_PORT = 7233
MAILPIT_DEFAULT_SMTP_PORT = 1025
API_PORT = 8000

_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}")
# What an operator must set (`${VAR:?...}`), with the value these tests set it to.
REQUIRED = {"CASEBOOK_BILLING_TOKEN": "compose-test-billing-token"}


class MissingVariable(Exception):
    """Compose refuses to start: a `${VAR:?message}` variable is not set."""


def _interpolate(value: Any, env: Mapping[str, str] = REQUIRED) -> Any:
    """Resolve compose interpolation with only `env` set: defaults, required, `$$` -> `$`."""
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, operator, argument = match.groups()
            if name in env:
                return env[name]
            if operator == "?":
                raise MissingVariable(f"{name}: {argument}")
            return argument or ""

        return _INTERPOLATION.sub(repl, value)
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _interpolate(yaml.safe_load(COMPOSE_FILE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _published_container_ports(service: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            target = str(entry).split("/")[0].rsplit(":", 1)[-1]
            ports.add(int(target))
    return ports


def _image_name(service: dict[str, Any]) -> str:
    image = service.get("image", "")
    return image.split("@")[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image


def _services_with_image(services: dict[str, dict[str, Any]], name: str) -> list[str]:
    return sorted(s for s, spec in services.items() if _image_name(spec) == name)


def _one_service(services: dict[str, dict[str, Any]], image: str) -> str:
    found = _services_with_image(services, image)
    assert len(found) == 1, f"expected one service running {image}, found {found}"
    return found[0]


def _running(services: dict[str, dict[str, Any]], subcommand: str) -> str:
    found = sorted(
        name for name, spec in services.items() if _command(spec)[:2] == ["casebook", subcommand]
    )
    assert len(found) == 1, f"expected one service running `casebook {subcommand}`: {found}"
    return found[0]


def _admin_tools_running(services: dict[str, dict[str, Any]], needle: str) -> list[str]:
    return [
        name
        for name in _services_with_image(services, "temporalio/admin-tools")
        if needle in " ".join(_command(services[name]))
    ]


def _temporal_db_host(services: dict[str, dict[str, Any]]) -> str:
    temporal = services[_one_service(services, "temporalio/server")]
    return _env(temporal)["POSTGRES_SEEDS"]


def test_every_service_the_product_needs_exists(services):
    temporal = _one_service(services, "temporalio/server")
    assert _env(services[temporal])["DB"] == "postgres12"
    assert _temporal_db_host(services) in services, "Temporal's postgres is not a service"
    assert _one_service(services, "temporalio/ui")
    assert _one_service(services, "axllent/mailpit")
    assert _admin_tools_running(services, "temporal-sql-tool"), "no schema setup service"
    assert _admin_tools_running(services, "namespace create"), "no namespace creation"
    for subcommand in ("api", "worker", "migrate"):
        assert _running(services, subcommand)
    postgres = _services_with_image(services, "postgres")
    assert len(postgres) == 2, f"Temporal and Casebook each need their own postgres: {postgres}"


def test_temporal_schema_setup_creates_and_migrates_both_databases(services):
    [setup] = _admin_tools_running(services, "temporal-sql-tool")
    script = " ".join(_command(services[setup]))
    assert script.count("create-database") >= 2
    assert script.count("setup-schema -v 0.0") >= 2
    assert "schema/postgresql/v12" in script
    assert "/temporal/versioned" in script
    assert "/visibility/versioned" in script
    for database in ("--db temporal ", "--db temporal_visibility "):
        assert database in script
    temporal = _one_service(services, "temporalio/server")
    assert _depends_on(services[temporal]).get(setup) == "service_completed_successfully"


def test_temporal_server_is_configured_explicitly(services):
    env = _env(services[_one_service(services, "temporalio/server")])
    assert env["BIND_ON_IP"] == "0.0.0.0"
    assert int(env["NUM_HISTORY_SHARDS"]) > 0
    assert env["DB_PORT"] == "5432"
    assert env["POSTGRES_USER"] and env["POSTGRES_PWD"]


def test_namespace_creation_is_idempotent_and_sets_retention(services):
    [create] = _admin_tools_running(services, "namespace create")
    script = " ".join(_command(services[create]))
    assert "namespace describe" in script
    assert "--retention" in script
    api_env = _env(services[_running(services, "api")])
    namespace = _env(services[create]).get("NAMESPACE")
    assert namespace == api_env["CASEBOOK_TEMPORAL_NAMESPACE"]


@pytest.mark.parametrize("subcommand", ["api", "worker", "migrate"])
def test_casebook_processes_use_casebook_db(services, subcommand):
    env = _env(services[_running(services, subcommand)])
    url = urlsplit(env["CASEBOOK_DATABASE_URL"])
    assert url.scheme.startswith("postgresql")
    assert url.hostname in services, f"{url.hostname} is not a compose service"
    assert url.hostname != _temporal_db_host(services), "Casebook must not use Temporal's DB"
    assert _image_name(services[url.hostname]) == "postgres"
    db_env = _env(services[url.hostname])
    assert url.username == db_env["POSTGRES_USER"]
    assert url.password == db_env["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == db_env.get("POSTGRES_DB", db_env["POSTGRES_USER"])
    assert (url.port or 5432) == 5432


@pytest.mark.parametrize("subcommand", ["api", "worker"])
def test_casebook_processes_reach_temporal_and_mailpit(services, subcommand):
    env = _env(services[_running(services, subcommand)])
    host, port = env["CASEBOOK_TEMPORAL_ADDRESS"].rsplit(":", 1)
    assert host == _one_service(services, "temporalio/server")
    assert int(port) == TEMPORAL_FRONTEND_PORT

    mailpit = _one_service(services, "axllent/mailpit")
    smtp_bind = _env(services[mailpit]).get("MP_SMTP_BIND_ADDR", "")
    mailpit_smtp_port = int(smtp_bind.rsplit(":", 1)[-1] or MAILPIT_DEFAULT_SMTP_PORT)
    assert env["CASEBOOK_SMTP_HOST"] == mailpit
    assert int(env["CASEBOOK_SMTP_PORT"]) == mailpit_smtp_port
    assert env["CASEBOOK_API_HOST"] == "0.0.0.0"


def test_shared_casebook_environment_is_written_once():
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    shared = raw["x-casebook-env"]
    for subcommand in ("api", "worker", "migrate"):
        name = next(
            n for n, s in raw["services"].items() if _command(s)[:2] == ["casebook", subcommand]
        )
        assert _env(raw["services"][name]) == _env({"environment": shared})
    assert COMPOSE_FILE.read_text().count("CASEBOOK_DATABASE_URL") == 1


def test_worker_scales(services):
    worker = services[_running(services, "worker")]
    assert _command(worker) == ["casebook", "worker"]
    assert not worker.get("ports"), "a published port would stop `--scale worker=N`"
    assert "container_name" not in worker, "a fixed container name would stop scaling"
    assert worker.get("build")
    assert int(worker.get("deploy", {}).get("replicas", 1)) >= 1


def test_api_serves_and_is_health_checked(services):
    api = services[_running(services, "api")]
    assert _command(api) == ["casebook", "api"]
    assert api.get("build")
    assert API_PORT in _published_container_ports(api)
    assert _env(api)["CASEBOOK_API_PORT"] == str(API_PORT)
    check = api["healthcheck"]["test"]
    check_text = check if isinstance(check, str) else " ".join(check)
    assert f":{API_PORT}/healthz" in check_text
    assert "curl" not in check_text, "python:3.11-slim has no curl"


def test_casebook_starts_after_its_dependencies(services):
    migrate = _running(services, "migrate")
    temporal = _one_service(services, "temporalio/server")
    db_host = urlsplit(_env(services[migrate])["CASEBOOK_DATABASE_URL"]).hostname
    assert _depends_on(services[migrate]).get(db_host) == "service_healthy"
    for subcommand in ("api", "worker"):
        deps = _depends_on(services[_running(services, subcommand)])
        assert deps.get(migrate) == "service_completed_successfully"
        assert temporal in deps


def test_every_dependency_is_a_service(services):
    for name, spec in services.items():
        for dep in _depends_on(spec):
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_images_are_pinned_and_not_deprecated(services):
    for name, spec in services.items():
        image = spec.get("image")
        if image is None:
            assert spec.get("build"), f"{name} has neither image nor build"
            continue
        if spec.get("build"):
            continue  # the locally built Casebook image
        assert not image.startswith("temporalio/auto-setup"), "auto-setup is deprecated"
        last = image.split("@")[0].split("/")[-1]
        assert ":" in last or "@" in image, f"{name}: image {image} has no tag"
        if ":" in last:
            assert last.rsplit(":", 1)[1] != "latest", f"{name}: {image} uses latest"


def test_databases_use_named_volumes(compose, services):
    named = set(compose.get("volumes") or {})
    for name in _services_with_image(services, "postgres"):
        sources = {str(v).split(":")[0] for v in services[name].get("volumes") or []}
        assert sources & named, f"{name} keeps its data outside a named volume"


def test_dockerfile_installs_the_package_and_runs_as_non_root():
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert lines[0].startswith("FROM python:3.11-slim")
    text = "\n".join(lines)
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", text)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    cmd = [line for line in lines if line.startswith("CMD ")][-1]
    assert cmd.split(None, 1)[1].replace(" ", "") == '["casebook","api"]'


def test_compose_commands_are_declared_by_the_cli(services):
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert "casebook" in scripts
    used = {
        _command(spec)[1]
        for spec in services.values()
        if _command(spec)[:1] == ["casebook"] and len(_command(spec)) > 1
    }
    assert used, "no service runs the casebook CLI"
    assert used <= CLI_SUBCOMMANDS, f"unknown casebook subcommands: {used - CLI_SUBCOMMANDS}"


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@pytest.mark.skipif(not _docker_compose_available(), reason="docker compose is not installed")
def test_docker_compose_validates_the_file():
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **REQUIRED},
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("subcommand", ["api", "worker"])
def test_casebook_reaches_the_billing_service(services, subcommand):
    env = _env(services[_running(services, subcommand)])
    url = urlsplit(env["CASEBOOK_BILLING_URL"])
    billing = services[url.hostname]
    command = _command(billing)
    assert command[:3] == ["python", "-m", "billing.service"]
    assert command[command.index("--port") + 1] == str(url.port)
    assert command[command.index("--host") + 1] == "0.0.0.0"
    ledger = command[command.index("--db") + 1]
    assert ledger.startswith("sqlite:////var/lib/casebook/ledger/")  # its own database
    assert any(str(v).endswith(":/var/lib/casebook/ledger") for v in billing["volumes"])
    assert _depends_on(services[_running(services, subcommand)])[url.hostname] == "service_healthy"


def test_billing_needs_a_token_that_compose_will_not_start_without():
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    with pytest.raises(MissingVariable, match="CASEBOOK_BILLING_TOKEN"):
        _interpolate(raw, env={})  # as `docker compose up` with the variable unset
    services = _interpolate(raw)["services"]
    billing = services["billing"]
    assert "--insecure-no-token" not in _command(billing)
    assert "--token" not in _command(billing), "a token in argv shows in `ps`"
    assert _env(billing)["BILLING_TOKEN"] == REQUIRED["CASEBOOK_BILLING_TOKEN"]
    for subcommand in ("api", "worker"):  # the sweeps (API) and the activities (worker) call it
        env = _env(services[_running(services, subcommand)])
        assert env["CASEBOOK_BILLING_TOKEN"] == REQUIRED["CASEBOOK_BILLING_TOKEN"]
