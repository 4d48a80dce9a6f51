"""The cluster configs in ``infra/``, checked offline in about a second.

The AWS cluster YAML goes through Ray's own JSON schema and validator from the installed wheel;
the KubeRay manifests are checked for the fields this job relies on; every image tag must carry
the ``ray==`` pin of ``constraints.txt``. Drift: every command in the configs and docs that runs
the job is parsed with Ray's ``ray job submit`` parser and with the project's own CLI parser, so a
flag the job no longer takes fails here rather than at 2 a.m. on a cluster.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT = Path(__file__).resolve().parent.parent
INFRA = PROJECT / "infra"
AWS_CLUSTER = INFRA / "aws" / "cluster.yaml"
KUBERAY = INFRA / "kuberay"
DOCKERFILE = INFRA / "Dockerfile"
JOB_SCRIPT = "jobs/annotate.py"
GPU = "nvidia.com/gpu"


class DriftError(Exception):
    """A documented or configured job command that the job's parsers no longer accept."""


# ---------------------------------------------------------------------------------------------
# Reading the configs


def ray_pin() -> str:
    """The ``ray==`` version in constraints.txt."""
    for line in (PROJECT / "constraints.txt").read_text().splitlines():
        match = re.fullmatch(r"ray==(\S+)", line.split("#")[0].strip())
        if match:
            return match.group(1)
    raise AssertionError("constraints.txt pins no ray== version")


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kuberay(name: str, kind: str) -> dict[str, Any]:
    """The one object of ``kind`` in ``infra/kuberay/<name>``."""
    found = [doc for doc in load_docs(KUBERAY / name) if doc.get("kind") == kind]
    assert len(found) == 1, f"{name}: expected one {kind}, found {len(found)}"
    return found[0]


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of every mapping inside ``node``, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def images_in(node: Any) -> list[str]:
    return [v for k, v in walk(node) if k in ("image", "head_image", "worker_image")]


def ray_version_of_image(image: str) -> str | None:
    """Ray version an image tag declares: ``rayproject/ray:2.60.0-...`` or ``...:ray2.60.0-...``."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return None  # no tag at all (the colon was a registry port)
    if name.endswith("rayproject/ray"):
        match = re.match(r"(\d+\.\d+\.\d+)", tag)
    else:
        match = re.search(r"ray(\d+\.\d+\.\d+)", tag)
    return match.group(1) if match else None


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of infra/Dockerfile, continuation lines joined."""
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.strip().split(None, 1) for line in joined.splitlines() if line.strip())
    ]


def dockerfile_workdir() -> str:
    return [args for instr, args in dockerfile_instructions() if instr == "WORKDIR"][-1].strip()


def worker_types(aws: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in aws["available_node_types"].items() if k != aws["head_node_type"]}


def pod_templates(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    return template["spec"]["containers"]


def gpu_limit(group: dict[str, Any]) -> Any:
    limits = [c.get("resources", {}).get("limits", {}) for c in containers(group["template"])]
    return next((lim[GPU] for lim in limits if GPU in lim), None)


def cron_container() -> dict[str, Any]:
    pod = kuberay("cronjob.yaml", "CronJob")["spec"]["jobTemplate"]["spec"]["template"]
    return containers(pod)[0]


def cronjob_script() -> str:
    container = cron_container()
    assert container["command"] == ["/bin/bash", "-c"], "the CronJob runs a bash script"
    return container["args"][0]


RAYCLUSTER_SPEC = kuberay("raycluster.yaml", "RayCluster")["spec"]
RAYJOB_SPEC = kuberay("rayjob.yaml", "RayJob")["spec"]
RAYCRONJOB_SPEC = kuberay("raycronjob.yaml", "RayCronJob")["spec"]
CLUSTER_SPECS = {
    "raycluster.yaml": RAYCLUSTER_SPEC,
    "rayjob.yaml": RAYJOB_SPEC["rayClusterSpec"],
    "raycronjob.yaml": RAYCRONJOB_SPEC["jobTemplate"]["rayClusterSpec"],
}
all_cluster_specs = pytest.mark.parametrize(
    "spec", list(CLUSTER_SPECS.values()), ids=list(CLUSTER_SPECS)
)


@pytest.fixture(scope="module")
def aws() -> dict[str, Any]:
    return yaml.safe_load(AWS_CLUSTER.read_text())


@pytest.fixture(scope="module")
def ray_schema() -> dict[str, Any]:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def schema_errors(config: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<top>'}: {error.message}"
        for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    ]


# ---------------------------------------------------------------------------------------------
# AWS: Ray autoscaler cluster YAML


def test_the_aws_cluster_yaml_validates_against_rays_own_json_schema(aws, ray_schema):
    assert schema_errors(aws, ray_schema) == []


def test_rays_schema_rejects_fractional_resources_and_unknown_keys(aws, ray_schema):
    broken = copy.deepcopy(aws)
    broken["available_node_types"]["gpu_l4"]["resources"]["GPU"] = 0.5
    broken["idle_timeout_minute"] = 10
    errors = "\n".join(schema_errors(broken, ray_schema))
    assert "available_node_types/gpu_l4/resources/GPU" in errors
    assert "idle_timeout_minute" in errors


def test_the_aws_cluster_yaml_passes_rays_validate_config_after_prepare_config(aws):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(aws)))


def test_nodes_install_nothing_at_start_because_the_image_has_everything(aws):
    from ray.autoscaler._private.util import prepare_config

    # Left out, Ray's AWS defaults are merged in: `pip install` of a nightly Ray and of boto3.
    prepared = prepare_config(copy.deepcopy(aws))
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands"):
        assert prepared[key] == [], key


def test_the_head_runs_no_work_and_is_on_demand(aws):
    head = aws["available_node_types"][aws["head_node_type"]]
    assert head["resources"]["CPU"] == 0
    assert head["resources"].get("GPU", 0) == 0
    assert "InstanceMarketOptions" not in head["node_config"]


def test_every_worker_type_scales_from_zero_on_spot(aws):
    for name, node_type in worker_types(aws).items():
        assert node_type["min_workers"] == 0, name
        assert 0 < node_type["max_workers"] <= aws["max_workers"], name
        market = node_type["node_config"].get("InstanceMarketOptions", {})
        assert market.get("MarketType") == "spot", name


def test_at_least_two_gpu_worker_types_offer_one_gpu_each(aws):
    gpu_types = {
        name: node_type
        for name, node_type in worker_types(aws).items()
        if node_type["resources"].get("GPU", 0) > 0
    }
    assert len(gpu_types) >= 2
    assert all(t["resources"]["GPU"] == 1 for t in gpu_types.values())
    instance_types = {t["node_config"]["InstanceType"] for t in gpu_types.values()}
    assert len(instance_types) == len(gpu_types), "each GPU type is a different instance type"


def test_a_cpu_worker_type_takes_the_decoding(aws):
    cpu_types = [
        t
        for t in worker_types(aws).values()
        if t["resources"].get("GPU", 0) == 0 and t["resources"].get("CPU", 0) > 0
    ]
    assert cpu_types


def test_every_declared_resource_is_an_integer(aws):
    # Stricter than Ray's schema, which lets 1.0 through: JSON Schema counts it as an integer.
    for node_type in aws["available_node_types"].values():
        for name, amount in node_type["resources"].items():
            assert type(amount) is int, f"{name}: {amount!r}"


def test_every_node_type_names_its_ami_because_rays_default_is_too_old(aws):
    for name, node_type in aws["available_node_types"].items():
        assert node_type["node_config"].get("ImageId"), name


def test_every_aws_node_runs_ray_with_token_auth_from_a_synced_file(aws):
    env = dict(
        option.split(None, 1)[1].split("=", 1)
        for option in aws["docker"]["run_options"]
        if option.startswith("-e ")
    )
    assert env["RAY_AUTH_MODE"] == "token"
    token_dir = str(Path(env["RAY_AUTH_TOKEN_PATH"]).parent)
    assert token_dir in aws["file_mounts"]


# ---------------------------------------------------------------------------------------------
# Images and Ray versions


def test_an_image_tag_without_the_ray_version_is_caught():
    assert ray_version_of_image("rayproject/ray:2.60.0-py311-gpu") == "2.60.0"
    assert ray_version_of_image("registry:5000/speech-emotion:ray2.60.0-py311-gpu") == "2.60.0"
    assert ray_version_of_image("registry:5000/speech-emotion:latest") is None
    assert ray_version_of_image("registry:5000/speech-emotion") is None


def test_the_dockerfile_builds_from_the_pinned_ray_gpu_image():
    bases = [args.split()[0] for instr, args in dockerfile_instructions() if instr == "FROM"]
    assert bases == [f"rayproject/ray:{ray_pin()}-py311-gpu"]


def test_the_dockerfile_installs_the_project_within_the_constraints():
    installs = [
        shlex.split(args)
        for instr, args in dockerfile_instructions()
        if instr == "RUN" and "pip install" in args
    ]
    assert any(
        {"-c", "constraints.txt", "."} <= set(tokens)
        and tokens.index("-c") + 1 == tokens.index("constraints.txt")
        for tokens in installs
    ), installs


def test_every_config_image_carries_the_pinned_ray_version(aws):
    images = images_in(aws["docker"]) + [
        image for path in sorted(KUBERAY.glob("*.yaml")) for image in images_in(load_docs(path))
    ]
    assert len(images) >= 10  # AWS, and head + two groups in each of three specs, and the CronJob
    wrong = [image for image in images if ray_version_of_image(image) != ray_pin()]
    assert wrong == []


def test_every_kuberay_ray_version_is_the_pin():
    versions = [
        value
        for path in sorted(KUBERAY.glob("*.yaml"))
        for key, value in walk(load_docs(path))
        if key == "rayVersion"
    ]
    assert versions and set(versions) == {ray_pin()}


# ---------------------------------------------------------------------------------------------
# KubeRay manifests


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("raycluster.yaml", [("ray.io/v1", "RayCluster")]),
        ("rayjob.yaml", [("ray.io/v1", "RayJob")]),
        ("raycronjob.yaml", [("ray.io/v1", "RayCronJob")]),
        ("cronjob.yaml", [("batch/v1", "CronJob")]),
        ("serviceaccount.yaml", [("v1", "Namespace"), ("v1", "ServiceAccount")]),
    ],
)
def test_each_kuberay_manifest_holds_the_objects_we_apply(name, expected):
    assert [(d["apiVersion"], d["kind"]) for d in load_docs(KUBERAY / name)] == expected


@all_cluster_specs
def test_the_cluster_autoscales_with_autoscaler_v2(spec):
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2"
    # KubeRay rejects the version field together with the older env-var switch.
    env_names = [
        e["name"] for t in pod_templates(spec) for c in containers(t) for e in c.get("env", [])
    ]
    assert "RAY_enable_autoscaler_v2" not in env_names


@all_cluster_specs
def test_the_head_runs_no_work(spec):
    head = spec["headGroupSpec"]
    # A string: rayStartParams is a map[string]string.
    assert head["rayStartParams"]["num-cpus"] == "0"
    limits = [c.get("resources", {}).get("limits", {}) for c in containers(head["template"])]
    assert all(GPU not in lim for lim in limits)


@all_cluster_specs
def test_every_worker_group_scales_from_zero(spec):
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] == 0, group["groupName"]
        assert group.get("replicas", 0) == 0, group["groupName"]
        assert group["maxReplicas"] > 0, group["groupName"]


@all_cluster_specs
def test_cpu_and_gpu_work_run_in_separate_worker_groups(spec):
    gpu_groups = [g for g in spec["workerGroupSpecs"] if gpu_limit(g) is not None]
    cpu_groups = [g for g in spec["workerGroupSpecs"] if gpu_limit(g) is None]
    assert gpu_groups and cpu_groups
    for group in gpu_groups:
        assert int(gpu_limit(group)) >= 1, group["groupName"]
        for container in containers(group["template"]):
            requests = container.get("resources", {}).get("requests", {})
            if GPU in requests:  # Kubernetes needs requests == limits for extended resources
                assert requests[GPU] == container["resources"]["limits"][GPU]


@all_cluster_specs
def test_the_cluster_uses_token_auth_from_the_shared_secret(spec):
    assert spec["authOptions"] == {"mode": "token", "secretName": "speech-emotion-ray-auth"}


@all_cluster_specs
def test_ray_pods_reach_s3_through_the_irsa_service_account(spec):
    account = kuberay("serviceaccount.yaml", "ServiceAccount")
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role.startswith("arn:aws:iam::")
    for template in pod_templates(spec):
        assert template["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_the_rayjob_and_raycronjob_embed_exact_copies_of_raycluster_yaml():
    assert RAYJOB_SPEC["rayClusterSpec"] == RAYCLUSTER_SPEC
    assert RAYCRONJOB_SPEC["jobTemplate"] == RAYJOB_SPEC


def test_the_rayjob_deletes_its_cluster_after_the_job():
    assert RAYJOB_SPEC["shutdownAfterJobFinishes"] is True
    ttl = RAYJOB_SPEC["ttlSecondsAfterFinished"]
    assert type(ttl) is int and ttl >= 0


def test_the_rayjob_driver_reserves_no_gpu():
    assert RAYJOB_SPEC.get("entrypointNumGpus", 0) == 0
    assert "GPU" not in json.loads(RAYJOB_SPEC.get("entrypointResources") or "{}")


def test_every_kubernetes_job_runs_from_the_images_project_folder():
    folder = dockerfile_workdir()
    assert yaml.safe_load(RAYJOB_SPEC["runtimeEnvYAML"])["working_dir"] == folder
    assert cron_container()["workingDir"] == folder
    copied = [
        source.rstrip("/")
        for instr, args in dockerfile_instructions()
        if instr == "COPY"
        for source in [t for t in args.split() if not t.startswith("--")][:-1]
    ]
    assert Path(JOB_SCRIPT).parent.as_posix() in copied


def test_the_cronjob_submits_nightly_to_the_long_lived_cluster_with_its_token():
    cron = kuberay("cronjob.yaml", "CronJob")
    assert len(cron["spec"]["schedule"].split()) == 5
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    [(params, _)] = submit_commands_in_shell(cronjob_script())
    cluster = kuberay("raycluster.yaml", "RayCluster")["metadata"]["name"]
    assert params["address"] == f"http://{cluster}-head-svc:8265"
    assert "$(date" in params["submission_id"], "a dated submission id makes reruns idempotent"
    env = {var["name"]: var for var in cron_container()["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    secret = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": RAYCLUSTER_SPEC["authOptions"]["secretName"], "key": "auth_token"}


def test_no_config_carries_a_credential():
    for path in sorted(INFRA.rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), path
        assert "aws_secret_access_key" not in text.lower(), path
    for path in sorted(KUBERAY.glob("*.yaml")):
        for key, value in walk(load_docs(path)):
            if key == "env":
                for var in value:
                    if re.search(r"TOKEN|SECRET|PASSWORD|KEY", var["name"]):
                        assert "value" not in var, f"{path.name}: {var['name']} is a literal"


# ---------------------------------------------------------------------------------------------
# Drift: every command that runs the job must still parse


def check_job_command(tokens: list[str]) -> None:
    """Raise DriftError unless ``tokens`` run jobs/annotate.py with arguments the CLI accepts."""
    from speech_emotion.cli import build_parser

    if len(tokens) < 2 or Path(tokens[0]).name not in ("python", "python3"):
        raise DriftError(f"not a python command: {shlex.join(tokens)}")
    if tokens[1] != JOB_SCRIPT:
        raise DriftError(f"runs {tokens[1]!r}, not {JOB_SCRIPT}")
    if not (PROJECT / JOB_SCRIPT).is_file():
        raise DriftError(f"{JOB_SCRIPT} does not exist")
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser().parse_args(["annotate", *tokens[2:]])
    except SystemExit as exc:
        reason = (stderr.getvalue().strip().splitlines() or ["(no message)"])[-1]
        raise DriftError(f"`annotate {shlex.join(tokens[2:])}`: {reason}") from exc


def parse_ray_job_submit(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``ray job submit``'s options, parsed by Ray's own click command, and its entrypoint."""
    import click
    from ray.dashboard.modules.job.cli import submit

    try:
        params = submit.make_context("submit", list(args)).params
    except click.UsageError as exc:
        raise DriftError(f"`ray job submit` rejects its options: {exc.format_message()}") from exc
    if params["entrypoint_num_gpus"]:
        raise DriftError("the driver reserves a GPU (--entrypoint-num-gpus)")
    if params["runtime_env_json"] is not None:
        try:
            json.loads(params["runtime_env_json"])
        except json.JSONDecodeError as exc:
            raise DriftError(f"--runtime-env-json is not JSON: {exc}") from exc
    return params, list(params["entrypoint"])


def submit_commands_in_shell(text: str) -> list[tuple[dict[str, Any], list[str]]]:
    """Each ``ray job submit`` in shell text (continuations joined): options and entrypoint."""
    found = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if "ray job submit" not in line:
            continue
        tokens = shlex.split(line, comments=True)
        starts = [i for i in range(len(tokens)) if tokens[i : i + 3] == ["ray", "job", "submit"]]
        found.extend(parse_ray_job_submit(tokens[i + 3 :]) for i in starts)
    return found


def job_commands(kind: str, text: str) -> list[list[str]]:
    """The job commands in a source, each checked; DriftError on the first that drifted."""
    if kind == "entrypoint":
        commands = [shlex.split(text)]
    else:
        commands = [entrypoint for _, entrypoint in submit_commands_in_shell(text)]
    for command in commands:
        check_job_command(command)
    return commands


def markdown_code_blocks(path: Path) -> list[tuple[int, str]]:
    """(first line number, text) of each fenced code block."""
    text = path.read_text()
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(1))
        for match in re.finditer(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    ]


def drift_sources() -> list[tuple[str, str, str]]:
    """(id, kind, text) of everything that runs the job: configs, and the docs' submit blocks."""
    sources = [
        ("rayjob.yaml:entrypoint", "entrypoint", RAYJOB_SPEC["entrypoint"]),
        ("raycronjob.yaml:entrypoint", "entrypoint", RAYCRONJOB_SPEC["jobTemplate"]["entrypoint"]),
        ("cronjob.yaml:script", "shell", cronjob_script()),
    ]
    for readme in (INFRA / "README.md", PROJECT / "README.md"):
        for line, block in markdown_code_blocks(readme):
            if "ray job submit" in block:
                label = readme.relative_to(PROJECT).as_posix()
                sources.append((f"{label}:{line}", "shell", block))
    return sources


DRIFT_SOURCES = drift_sources()


def test_drift_sources_cover_every_config_and_doc_that_runs_the_job():
    ids = [source_id for source_id, _, _ in DRIFT_SOURCES]
    assert {"rayjob.yaml:entrypoint", "raycronjob.yaml:entrypoint", "cronjob.yaml:script"} <= set(
        ids
    )
    # The AWS and the KubeRay submissions in infra/README.md.
    assert sum(source_id.startswith("infra/README.md:") for source_id in ids) >= 2


@pytest.mark.parametrize(
    ("kind", "text"),
    [(kind, text) for _, kind, text in DRIFT_SOURCES],
    ids=[source_id for source_id, _, _ in DRIFT_SOURCES],
)
def test_every_documented_job_command_parses_with_the_cli(kind, text):
    assert job_commands(kind, text), "no job command found"


def _broken(source_id: str, old: str, new: str) -> tuple[str, str]:
    [(kind, text)] = [(k, t) for i, k, t in DRIFT_SOURCES if i == source_id]
    assert old in text, f"{source_id} no longer contains {old!r}: update this test"
    return kind, text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("source_id", "old", "new"),
    [
        ("rayjob.yaml:entrypoint", "--cpu-workers 32", "--cpu-workers 32 --no-such-flag 1"),
        ("rayjob.yaml:entrypoint", "--gpu-workers 8", "--gpu-workers eight"),
        ("rayjob.yaml:entrypoint", JOB_SCRIPT, "jobs/annotate_old.py"),
        ("cronjob.yaml:script", "--cpu-workers 32", "--cpu-workers 32 --no-such-flag"),
        ("cronjob.yaml:script", "--entrypoint-num-cpus 0", "--entrypoint-num-cpu 0"),
        ("cronjob.yaml:script", "--entrypoint-num-cpus 0", "--entrypoint-num-gpus 1"),
    ],
    ids=[
        "unknown-job-flag",
        "bad-flag-value",
        "other-script",
        "unknown-job-flag-in-submit",
        "misspelt-ray-option",
        "driver-takes-a-gpu",
    ],
)
def test_the_drift_check_catches_a_command_the_job_no_longer_takes(source_id, old, new):
    kind, text = _broken(source_id, old, new)
    with pytest.raises(DriftError):
        job_commands(kind, text)


def test_one_settings_file_fills_every_placeholder_of_every_config(tmp_path):
    import runpy

    configure = runpy.run_path(str(INFRA / "configure.py"))
    settings = tmp_path / "settings.env"
    settings.write_text(
        "ACCOUNT=210987654321\nREGION=eu-central-1\nAMI=ami-0abc\n"
        "IMAGE=registry.example/se:ray2.60.0-py311-gpu\n"
        "MANIFEST=s3://acme-audio/manifests/\nOUTPUT=s3://acme-labels/emotions/\n"
    )
    shipped = configure["read_settings"](INFRA / "settings.env")
    assert shipped == {key: value for key, value in configure["PLACEHOLDERS"].items()}
    written = configure["render"](configure["read_settings"](settings), tmp_path / "build")
    assert len(written) == len(list(INFRA.glob("*/*.yaml")))
    for path in written:
        text = path.read_text()
        for placeholder in configure["PLACEHOLDERS"].values():
            assert placeholder not in text, f"{path.name} still holds {placeholder}"
        list(yaml.safe_load_all(text))
    jobs = (tmp_path / "build" / "kuberay" / "rayjob.yaml").read_text()
    assert "s3://acme-audio/manifests/ s3://acme-labels/emotions/" in jobs
