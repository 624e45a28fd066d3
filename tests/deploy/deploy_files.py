"""Readers of the deployment files (Dockerfile, .dockerignore, deploy/) shared by tests/deploy.

No container tool and no network: the Dockerfile is read as text (continuations joined,
comments dropped), the manifests with PyYAML.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"
KUBERAY = DEPLOY / "kuberay"
LOCK = ROOT / "requirements.lock"
CLUSTER_REQUIREMENTS = DEPLOY / "requirements-cluster.txt"
PYPROJECT = ROOT / "pyproject.toml"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """{canonical name: version} of a requirements file's `name==version` lines (extras dropped)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)", line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        pins[canonical(match.group(1))] = match.group(3)
    return pins


# --- Dockerfile ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    stage: str  # the `AS` name of the stage it belongs to ("" before the first FROM: global ARGs)
    keyword: str  # upper case
    args: str
    line: int


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments and parser directives dropped."""
    out: list[Instruction] = []
    stage = ""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        text = " ".join(part for part in pending if part)
        pending = []
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.search(r"\bAS\s+(\S+)\s*$", args, re.IGNORECASE)
            stage = match.group(1) if match else f"stage{sum(i.keyword == 'FROM' for i in out)}"
        out.append(Instruction(stage, keyword, args.strip(), start))
    assert not pending, "Dockerfile ends inside a continued instruction"
    return out


def dockerfile_args(instructions: list[Instruction]) -> dict[str, str]:
    """Default values of the global ARGs (those before the first FROM)."""
    args = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG" and "=" in ins.args:
            key, _, value = ins.args.partition("=")
            args[key.strip()] = value.strip().strip('"')
    return args


def key_values(text: str) -> dict[str, str]:
    """`ENV`/`LABEL` arguments (`A=1 B="two words"`) as a dict."""
    return dict(token.split("=", 1) for token in shlex.split(text) if "=" in token)


def final_stage(instructions: list[Instruction]) -> str:
    return [i for i in instructions if i.keyword == "FROM"][-1].stage


def documented_image(path: Path = DOCKERFILE) -> str:
    """The image reference of the build command documented in the Dockerfile's header."""
    match = re.search(r"docker build -t (\S+) \.", path.read_text())
    assert match, "the Dockerfile's header documents no `docker build -t IMAGE .`"
    return match.group(1)


# --- manifests ----------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kubernetes_objects() -> list[tuple[Path, dict]]:
    """Every document under deploy/kuberay (all of them are Kubernetes objects)."""
    return [(path, doc) for path in sorted(KUBERAY.glob("*.yaml")) for doc in load_documents(path)]


def one_object(path: Path, kind: str) -> dict:
    objects = [doc for doc in load_documents(path) if doc.get("kind") == kind]
    assert len(objects) == 1, f"{path.name}: expected one {kind}, found {len(objects)}"
    return objects[0]


def raycluster_specs() -> Iterator[tuple[str, dict]]:
    """(where, RayCluster spec): the RayCluster's and the RayJob's rayClusterSpec."""
    yield "raycluster.yaml", one_object(KUBERAY / "raycluster.yaml", "RayCluster")["spec"]
    yield "rayjob.yaml", one_object(KUBERAY / "rayjob.yaml", "RayJob")["spec"]["rayClusterSpec"]


def ray_groups(spec: dict) -> Iterator[tuple[str, dict]]:
    """(group name, group spec) for the head ("head") and each worker group."""
    yield "head", spec["headGroupSpec"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["groupName"], group


def pod_specs(doc: dict) -> Iterator[tuple[str, dict]]:
    """(label, pod spec) of every pod template in a Kubernetes object."""
    kind = doc["kind"]
    if kind in ("RayCluster", "RayJob"):
        spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
        for name, group in ray_groups(spec):
            yield f"{kind}/{name}", group["template"]["spec"]
        if kind == "RayJob" and "submitterPodTemplate" in doc["spec"]:
            yield "RayJob/submitter", doc["spec"]["submitterPodTemplate"]["spec"]
    elif kind == "Job":
        yield "Job", doc["spec"]["template"]["spec"]


def containers(pod: dict) -> list[dict]:
    return list(pod.get("initContainers", [])) + list(pod.get("containers", []))


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def mounts_by_claim(pod: dict, container: dict) -> dict[str, dict]:
    """{PVC claim name: the container's volumeMount of it}."""
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod.get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    return {claims[m["name"]]: m for m in container.get("volumeMounts", []) if m["name"] in claims}


def entrypoint_argv(rayjob: dict) -> list[str]:
    return shlex.split(rayjob["spec"]["entrypoint"])


def split_run_argv(argv: list[str]) -> tuple[dict[str, str | bool], list[str], list[str]]:
    """`voxhear run ...` arguments as (flags, overrides, inputs), the way `voxhear run` reads them."""
    assert argv[:2] == ["voxhear", "run"], f"the entrypoint does not invoke `voxhear run`: {argv}"
    flags: dict[str, str | bool] = {}
    overrides, inputs = [], []
    rest = iter(argv[2:])
    for arg in rest:
        if arg in ("--run-dir", "--config", "--runner", "--ray-address"):
            flags[arg] = next(rest)
        elif arg.startswith("--"):
            flags[arg] = True
        elif re.fullmatch(r"[A-Za-z_][\w.]*=.*", arg):
            overrides.append(arg)
        else:
            inputs.append(arg)
    return flags, overrides, inputs


def under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


# --- .dockerignore ------------------------------------------------------------------------------


def dockerignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    patterns = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line.rstrip("/"))
    return patterns


def docker_ignored(relpath: str, patterns: list[str]) -> bool:
    """Whether `relpath` (or a folder above it) is left out of the build context. Close enough
    to Docker's rules for these patterns: `*` within a name, `**/` any folders, `!` re-includes."""

    def regex(pattern: str) -> re.Pattern:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
            elif pattern[i] == "*":
                out += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                out += "[^/]"
                i += 1
            else:
                out += re.escape(pattern[i])
                i += 1
        return re.compile(out + "$")

    parts = relpath.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        if any(regex(body.lstrip("/")).match(c) for c in candidates):
            ignored = not negate
    return ignored
