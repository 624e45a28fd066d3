"""The Kubernetes manifests under deploy/ (KubeRay RayCluster and RayJob, storage, model-store sync),
checked offline with PyYAML: API versions and kinds, the image the Dockerfile documents, resources,
the GPU group, the `voxhear run` entrypoint (flags and overrides read by voxhear's own parser and
config loader), volumes at the paths the pipeline reads, and token authentication.

Structural checks written here: no KubeRay CRD schema ships in the installed packages. With the
CRDs at hand (KUBERAY_CRD_DIR=folder holding ray.io_rayclusters.yaml and ray.io_rayjobs.yaml from
ray-project/kuberay ray-operator/config/crd/bases), test_manifests_match_the_kuberay_crd_schemas
also validates both against them; it is skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import SHARED_MODELS, require_shared
from tests.deploy.deploy_files import (
    DEPLOY,
    KUBERAY,
    LOCK,
    containers,
    dockerfile_instructions,
    documented_image,
    entrypoint_argv,
    env_of,
    final_stage,
    key_values,
    kubernetes_objects,
    load_documents,
    manifest_files,
    mounts_by_claim,
    one_object,
    pod_specs,
    ray_groups,
    raycluster_specs,
    read_pins,
    split_run_argv,
    under,
)

MODELS_CLAIM = "voxhear-models"
DATA_CLAIM = "voxhear-data"
TOKEN_SECRET = "voxhear-ray-token"


def rayjob() -> dict:
    return one_object(KUBERAY / "rayjob.yaml", "RayJob")


def test_every_yaml_under_deploy_parses():
    files = manifest_files()
    assert {p.name for p in files} >= {"raycluster.yaml", "rayjob.yaml", "storage.yaml", "models-sync-job.yaml"}
    for path in files:
        assert load_documents(path), f"{path} is empty"
    for path, doc in kubernetes_objects():
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{path.name}: not a Kubernetes object"
        assert doc["metadata"].get("name"), f"{path.name}: {doc['kind']} has no name"


def test_ray_objects_use_the_current_kuberay_api():
    assert one_object(KUBERAY / "raycluster.yaml", "RayCluster")["apiVersion"] == "ray.io/v1"
    assert rayjob()["apiVersion"] == "ray.io/v1"
    for path, doc in kubernetes_objects():
        if doc["apiVersion"].startswith("ray.io/"):
            assert doc["apiVersion"] == "ray.io/v1", f"{path.name}: {doc['apiVersion']} is not the current API"


def test_the_rayjob_makes_the_same_cluster_as_raycluster_yaml():
    (_, cluster), (_, from_job) = raycluster_specs()
    assert from_job == cluster, "rayjob.yaml's rayClusterSpec drifted from raycluster.yaml's spec"


def test_images_are_the_one_the_dockerfile_documents():
    image = documented_image()
    lock_ray = read_pins(LOCK)["ray"]
    seen = 0
    for path, doc in kubernetes_objects():
        for label, pod in pod_specs(doc):
            for container in containers(pod):
                if "voxhear" in container["image"]:
                    assert container["image"] == image, f"{path.name} {label}: {container['image']} is not {image}"
                    seen += 1
                else:
                    assert ":" in container["image"] and not container["image"].endswith(":latest"), (
                        f"{path.name} {label}: pin a tag for {container['image']}"
                    )
    assert seen >= 7  # head and two groups, twice, and the model-store check
    for where, spec in raycluster_specs():
        assert spec["rayVersion"] == lock_ray, f"{where}: rayVersion must be the lock's ray ({lock_ray})"
        for name, group in ray_groups(spec):
            ray_container = group["template"]["spec"]["containers"][0]
            assert ray_container["image"] == image, f"{where} {name}: the Ray container must be the voxhear image"


def test_every_container_requests_and_limits_cpu_and_memory():
    for path, doc in kubernetes_objects():
        for label, pod in pod_specs(doc):
            for container in containers(pod):
                resources = container.get("resources", {})
                for kind in ("requests", "limits"):
                    for resource in ("cpu", "memory"):
                        assert resource in resources.get(kind, {}), (
                            f"{path.name} {label} {container['name']}: no {kind}.{resource}"
                        )


def test_one_worker_group_has_a_gpu_and_only_it():
    for where, spec in raycluster_specs():
        groups = dict(ray_groups(spec))
        assert len(groups) == 3, f"{where}: expected a head, a CPU group and a GPU group"
        gpu_groups = []
        for name, group in groups.items():
            resources = group["template"]["spec"]["containers"][0]["resources"]
            gpus = resources["limits"].get("nvidia.com/gpu")
            if gpus is not None:
                gpu_groups.append(name)
                assert int(gpus) == 1, f"{where} {name}: nvidia.com/gpu should be 1"
                assert resources["requests"].get("nvidia.com/gpu", gpus) == gpus, (
                    f"{where} {name}: GPU request != limit"
                )
                tolerations = group["template"]["spec"].get("tolerations", [])
                assert any(t.get("key") == "nvidia.com/gpu" for t in tolerations), f"{where} {name}: no GPU toleration"
        assert gpu_groups and "head" not in gpu_groups and len(gpu_groups) == 1, f"{where}: GPU groups {gpu_groups}"
        assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0", f"{where}: the head should run no work"


def test_every_ray_pod_mounts_the_model_store_at_voxhear_model_dir_and_the_data_volume():
    storage = {doc["metadata"]["name"]: doc for doc in load_documents(KUBERAY / "storage.yaml")}
    assert {MODELS_CLAIM, DATA_CLAIM} <= storage.keys()
    assert "ReadWriteMany" in storage[DATA_CLAIM]["spec"]["accessModes"], "every Ray pod writes the data volume"
    image_env = {}  # the runtime stage's ENV: what a container that sets nothing gets
    instructions = dockerfile_instructions()
    for ins in instructions:
        if ins.stage == final_stage(instructions) and ins.keyword == "ENV":
            image_env.update(key_values(ins.args))
    data_paths = set()
    for path, doc in kubernetes_objects():
        for label, pod in pod_specs(doc):
            for container in containers(pod):
                mounts = mounts_by_claim(pod, container)
                env = env_of(container)
                if MODELS_CLAIM in mounts and "voxhear" in container["image"]:
                    model_dir = env.get("VOXHEAR_MODEL_DIR", image_env.get("VOXHEAR_MODEL_DIR"))
                    assert model_dir == mounts[MODELS_CLAIM]["mountPath"] == image_env["VOXHEAR_MODEL_DIR"], (
                        f"{path.name} {label}: VOXHEAR_MODEL_DIR is not where the model store is mounted"
                    )
            if doc["kind"] in ("RayCluster", "RayJob"):
                ray_container = pod["containers"][0]
                mounts = mounts_by_claim(pod, ray_container)
                assert MODELS_CLAIM in mounts and DATA_CLAIM in mounts, f"{path.name} {label}: a volume is missing"
                assert mounts[MODELS_CLAIM].get("readOnly") is True, f"{path.name} {label}: mount the store read-only"
                assert env_of(ray_container).get("VOXHEAR_OFFLINE") == "1"
                assert any(m["mountPath"] == "/dev/shm" for m in ray_container["volumeMounts"])
                data_paths.add(mounts[DATA_CLAIM]["mountPath"])
    assert len(data_paths) == 1, f"the data volume must be at one path in every Ray pod: {data_paths}"


def test_the_rayjob_runs_voxhear_with_a_work_area_every_pod_shares():
    job = rayjob()
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    flags, overrides, inputs = split_run_argv(entrypoint_argv(job))
    run_dir = flags.get("--run-dir")
    assert isinstance(run_dir, str), "the entrypoint gives no --run-dir"
    # Workers on every node write the work area: it is RUN/work for a local run directory, the
    # staging copy's for one in a bucket (pipeline/remote_run.py); either must be on the volume
    # every Ray pod mounts.
    staged = dict(o.split("=", 1) for o in overrides).get("staging_dir")
    work = staged if "://" in run_dir else run_dir
    assert isinstance(work, str), f"--run-dir {run_dir} is in a bucket, and no staging_dir= on a shared volume"
    assert inputs, "the entrypoint names no inputs"
    for where, cluster in raycluster_specs():
        for name, group in ray_groups(cluster):
            pod = group["template"]["spec"]
            data_mount = mounts_by_claim(pod, pod["containers"][0])[DATA_CLAIM]["mountPath"]
            assert work.startswith("/") and under(work, data_mount), f"{where} {name}: {work} is not shared"
            for uri in inputs:
                assert "://" in uri or under(uri, data_mount), f"{where} {name}: input {uri} is not on a shared volume"


def test_the_entrypoint_is_accepted_by_voxhear_itself():
    """The flags by `voxhear`'s own argument parser, the overrides by its config loader (keys and bounds)."""
    from voxhear.pipeline.cli import build_parser
    from voxhear.pipeline.config import load_config

    argv = entrypoint_argv(rayjob())
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.run_dir == split_run_argv(argv)[0]["--run-dir"]
    _, overrides, inputs = split_run_argv(argv)
    config = load_config(None, [*overrides, f"inputs={inputs}", f"run_dir={args.run_dir}"])
    for override in overrides:
        key, _, value = override.partition("=")
        section, _, field = key.rpartition(".")
        assert str(getattr(config.section(section) if section else config, field)) == value, override
    if any(key.endswith(".gpus") for key in (o.partition("=")[0] for o in overrides)):
        assert any(
            "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]
            for _, g in ray_groups(rayjob()["spec"]["rayClusterSpec"])
        ), "GPU shares but no GPU group"


def test_token_authentication_from_one_secret():
    for where, spec in raycluster_specs():
        assert spec.get("authOptions") == {"mode": "token", "secretName": TOKEN_SECRET}, where
    # Secrets are made with kubectl (deploy/README.md), never committed.
    for path, doc in kubernetes_objects():
        assert doc["kind"] != "Secret", f"{path.name}: keep Secrets out of the repository"


def test_a_client_needs_ray_auth_mode_and_the_token():
    """What deploy/README.md tells a `ray job submit` client to set, checked on the installed Ray:
    the Authorization header is sent with RAY_AUTH_MODE=token and RAY_AUTH_TOKEN, and not with the
    token alone."""
    probe = (
        "from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled "
        "as headers; print(headers({}))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    home = {"HOME": "/nonexistent-voxhear-home"}  # no ~/.ray/auth_token of this machine
    both = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **home, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "t0ken"},
    )
    assert "'Bearer t0ken'" in both.stdout, both.stderr
    alone = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **home, "RAY_AUTH_TOKEN": "t0ken"},
    )
    assert alone.stdout.strip() == "{}", alone.stderr
    readme = (DEPLOY / "README.md").read_text()
    assert "RAY_AUTH_MODE=token" in readme and "RAY_AUTH_TOKEN" in readme


def test_the_runtime_env_file_is_one_ray_job_submit_accepts():
    from ray.dashboard.modules.dashboard_sdk import parse_runtime_env_args
    from ray.runtime_env import RuntimeEnv

    env = parse_runtime_env_args(runtime_env=str(DEPLOY / "runtime_env.yaml"), working_dir=".")
    assert env["working_dir"] == "." and {".git", ".mypy_cache", "sample"} <= set(env["excludes"])
    assert "pip" not in env and "conda" not in env, "the locked stack comes from the image, not a runtime env"
    RuntimeEnv(**env)  # raises on a field Ray does not know


def test_the_model_store_check_of_the_sync_job_passes_on_the_shared_store_and_fails_on_a_bad_file(tmp_path):
    """The verify container's script, run here as the Job runs it, on ../shared/models and on a copy
    with one file corrupted."""
    require_shared(SHARED_MODELS / "MODELS.tsv", "the offline model store")
    job = one_object(KUBERAY / "models-sync-job.yaml", "Job")
    pod = job["spec"]["template"]["spec"]
    verify = next(c for c in pod["containers"] if c["name"] == "verify")
    assert verify["command"] == ["/bin/bash", "-c"]
    script = verify["args"][0]
    assert "voxhear models verify --no-download" in script and "sha256sum" in script
    sync = next(c for c in pod["initContainers"] if c["name"] == "sync")
    assert sync["args"][:2] == ["s3", "sync"] and any(
        e["secretRef"]["name"] == "voxhear-object-store" for e in sync["envFrom"]
    )
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "VOXHEAR_OFFLINE": "1",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }

    def verify_store(store: Path) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", script], env={**env, "VOXHEAR_MODEL_DIR": str(store)},
                              capture_output=True, text=True, timeout=300)

    good = verify_store(SHARED_MODELS)
    assert good.returncode == 0, good.stdout + good.stderr
    # A copy of the store (links), with one small file replaced by a corrupted copy.
    store = tmp_path / "store"
    for source in SHARED_MODELS.rglob("*"):
        target = store / source.relative_to(SHARED_MODELS)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
    listed = [line.split("\t") for line in (SHARED_MODELS / "MODELS.tsv").read_text().splitlines()[1:] if line]
    victim = store / min(listed, key=lambda row: int(row[1]))[0]  # the smallest file the store lists
    data = bytearray(victim.read_bytes())
    victim.unlink()
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    bad = verify_store(store)
    assert bad.returncode != 0 and victim.name in bad.stdout + bad.stderr


def _closed(schema):
    """A CRD schema with every object that lists its properties closed to others, as the API
    server's field validation (kubectl apply --validate=strict) treats unknown fields."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@pytest.mark.skipif(not os.environ.get("KUBERAY_CRD_DIR"), reason="no KubeRay CRDs offline (set KUBERAY_CRD_DIR)")
def test_manifests_match_the_kuberay_crd_schemas():
    import jsonschema

    crd_dir = Path(os.environ["KUBERAY_CRD_DIR"])
    for kind, crd_file, manifest in (
        ("RayCluster", "ray.io_rayclusters.yaml", "raycluster.yaml"),
        ("RayJob", "ray.io_rayjobs.yaml", "rayjob.yaml"),
    ):
        crd = yaml.safe_load((crd_dir / crd_file).read_text())
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schema = _closed(version["schema"]["openAPIV3Schema"])
        schema["properties"]["metadata"] = {"type": "object"}
        jsonschema.validate(one_object(KUBERAY / manifest, kind), schema)


def test_no_stray_files_in_deploy():
    """Everything under deploy/ is read by a test here or is documentation."""
    known = {
        "README.md",
        "check_lock.py",
        "requirements-cluster.txt",
        "runtime_env.yaml",
        "kuberay/raycluster.yaml",
        "kuberay/rayjob.yaml",
        "kuberay/storage.yaml",
        "kuberay/models-sync-job.yaml",
    }
    found = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert found == known, f"unchecked: {found - known}, missing: {known - found}"
    assert shutil.which("bash")
