"""Model store: resolve every model by name to sha256-verified files.

Resolution order for each model: an explicit path in the config (`models.paths.NAME`), the
config's `models.dir`, `VOXHEAR_MODEL_DIR`, the user cache (`~/.cache/voxhear/models`, or
`VOXHEAR_CACHE_DIR`), and last a download from the official origin into that cache when the
network allows. A file is hashed before anything loads it; a wrong hash is an error, never a
silent fall-through, because a corrupted or substituted weight file would otherwise produce
plausible but wrong labels.
"""

from __future__ import annotations

import csv
import os
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from voxhear.pipeline.io import atomic_path, sha256_file


def package_file(package: str, name: str) -> Path:
    """A data file shipped inside `package` (listed in pyproject's package-data), as a path.

    Found through importlib.resources, so a checkout, an editable install and an installed wheel
    all resolve it; wheels install unpacked, so it is a real file.
    """
    resource = resources.files(package).joinpath(name)
    if not isinstance(resource, Path):
        raise FileNotFoundError(f"{package}/{name} is not a plain file (is voxhear installed zipped?)")
    return resource


REGISTRY_PATH = package_file("voxhear.pipeline", "models.tsv")
DOWNLOAD_TIMEOUT_S = 30.0


class ModelStoreError(RuntimeError):
    """A model cannot be used; not about the data, so it stops the run."""


class UnknownModelError(ModelStoreError):
    pass


class ModelNotFoundError(ModelStoreError):
    pass


class ModelHashMismatchError(ModelStoreError):
    pass


@dataclass(frozen=True)
class ModelFile:
    path: str
    size: int
    sha256: str
    url: str | None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    licence: str
    note: str
    files: tuple[ModelFile, ...]

    @property
    def folder(self) -> str:
        return self.files[0].path.split("/", 1)[0]


@dataclass(frozen=True)
class Location:
    """One place a model may be: a store root (files at root/<registry path>), a model folder
    named in the config (files at folder/<file name>) or a one-file model's file itself."""

    label: str
    path: Path
    kind: str = "root"

    def file_path(self, f: ModelFile) -> Path:
        if self.kind == "file":
            return self.path
        if self.kind == "folder":
            return self.path / f.path.split("/", 1)[1]
        return self.path / f.path

    def describe(self, spec: ModelSpec) -> str:
        return str(self.path / spec.folder) if self.kind == "root" else str(self.path)


@dataclass(frozen=True)
class ResolvedModel:
    spec: ModelSpec
    files: dict[str, Path]
    where: str

    @property
    def path(self) -> Path:
        """The file of a one-file model, else the folder holding the model's files."""
        first = self.files[self.spec.files[0].path]
        return first if len(self.spec.files) == 1 else first.parent

    def file(self, name: str | None = None) -> Path:
        if name is None:
            return self.files[self.spec.files[0].path]
        for registry_path, actual in self.files.items():
            if registry_path.rsplit("/", 1)[-1] == name:
                return actual
        raise ModelStoreError(f"model '{self.spec.name}' has no file named {name!r}")

    @property
    def hashes(self) -> dict[str, str]:
        return {f.path: f.sha256 for f in self.spec.files}


def load_registry(path: Path = REGISTRY_PATH) -> dict[str, ModelSpec]:
    grouped: dict[str, list[dict[str, str]]] = {}
    with open(path, newline="") as handle:
        lines = (line for line in handle if not line.startswith("#"))
        for row in csv.DictReader(lines, delimiter="\t"):
            grouped.setdefault(row["model"], []).append(row)
    registry = {}
    for name, rows in grouped.items():
        files = tuple(
            ModelFile(
                path=r["file"], size=int(r["bytes"]), sha256=r["sha256"], url=None if r["url"] == "-" else r["url"]
            )
            for r in rows
        )
        registry[name] = ModelSpec(name=name, licence=rows[0]["licence"], note=rows[0]["note"], files=files)
    return registry


def default_cache_dir() -> Path:
    if os.environ.get("VOXHEAR_CACHE_DIR"):
        return Path(os.environ["VOXHEAR_CACHE_DIR"]) / "models"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "voxhear" / "models"


def _network_allowed() -> bool:
    return not any(os.environ.get(var, "") not in ("", "0") for var in ("VOXHEAR_OFFLINE", "HF_HUB_OFFLINE"))


# Hashing a 75 MB file costs ~0.2 s; remember verified files for the life of the process.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def _hash_of(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(path)
    return _VERIFIED[key]


@dataclass
class ModelStore:
    """Finds, verifies and (when allowed) downloads models listed in the registry."""

    explicit_paths: dict[str, str] = field(default_factory=dict)
    store_dir: str | None = None
    allow_download: bool = True
    cache_dir: Path = field(default_factory=default_cache_dir)
    registry: dict[str, ModelSpec] = field(default_factory=load_registry)

    @classmethod
    def from_config(cls, models_config) -> ModelStore:
        return cls(
            explicit_paths=dict(models_config.paths),
            store_dir=models_config.dir,
            allow_download=models_config.allow_download,
        )

    def spec(self, name: str) -> ModelSpec:
        if name not in self.registry:
            raise UnknownModelError(f"unknown model '{name}'; the registry has: {', '.join(sorted(self.registry))}")
        return self.registry[name]

    def locations(self, name: str) -> list[Location]:
        """Places to look in, in resolution order."""
        spec = self.spec(name)
        found: list[Location] = []
        if name in self.explicit_paths:
            explicit = Path(self.explicit_paths[name]).expanduser()
            kind = "file" if len(spec.files) == 1 and not explicit.is_dir() else "folder"
            found.append(Location(f"config models.paths.{name}", explicit, kind))
        if self.store_dir:
            found.append(Location("config models.dir", Path(self.store_dir).expanduser()))
        if os.environ.get("VOXHEAR_MODEL_DIR"):
            found.append(Location("VOXHEAR_MODEL_DIR", Path(os.environ["VOXHEAR_MODEL_DIR"]).expanduser()))
        found.append(Location("user cache", self.cache_dir))
        return found

    def resolve(self, name: str) -> ResolvedModel:
        """Return the verified model, downloading it into the cache if needed and allowed."""
        spec = self.spec(name)
        for location in self.locations(name):
            paths = {f.path: location.file_path(f) for f in spec.files}
            if not all(p.is_file() for p in paths.values()):
                continue
            for f in spec.files:
                actual = _hash_of(paths[f.path])
                if actual != f.sha256:
                    raise ModelHashMismatchError(
                        f"model '{name}': file {paths[f.path]} has sha256 {actual}, expected {f.sha256} "
                        f"(found via {location.label}). The file is corrupt or not the official one; "
                        f"replace it, or remove it so the next location is used."
                    )
            return ResolvedModel(spec=spec, files=paths, where=location.label)
        download_error = None
        if self._can_download(spec):
            download_error = self._download(spec)
            if download_error is None:
                cache = Location("user cache", self.cache_dir)
                return ResolvedModel(
                    spec=spec,
                    files={f.path: cache.file_path(f) for f in spec.files},
                    where="downloaded into the user cache",
                )
        looked = "; ".join(f"{loc.label}: {loc.describe(spec)}" for loc in self.locations(name))
        raise ModelNotFoundError(
            f"model '{name}' ({', '.join(f.path for f in spec.files)}; expected sha256 "
            f"{', '.join(f.sha256 for f in spec.files)}) was not found. Looked in: {looked}. "
            + self._how_to_provide(spec, download_error)
        )

    def _can_download(self, spec: ModelSpec) -> bool:
        return self.allow_download and _network_allowed() and all(f.url for f in spec.files)

    def _download(self, spec: ModelSpec) -> str | None:
        for f in spec.files:
            target = self.cache_dir / f.path
            if target.is_file() and _hash_of(target) == f.sha256:
                continue
            if not f.url:  # _can_download() checked this
                return f"{f.path} has no download URL"
            try:
                request = urllib.request.Request(f.url, headers=_auth_headers(f.url))
                with atomic_path(target) as tmp:
                    with (
                        urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response,
                        open(tmp, "wb") as out,
                    ):
                        while chunk := response.read(1 << 20):
                            out.write(chunk)
                    actual = sha256_file(tmp)
                    if actual != f.sha256:
                        raise ModelHashMismatchError(
                            f"model '{spec.name}': download of {f.url} has sha256 {actual}, expected {f.sha256}"
                        )
            except ModelHashMismatchError:
                raise
            except OSError as error:  # URLError, timeouts, DNS: the network does not allow it
                return f"download from {f.url} failed: {error}"
        return None

    def _how_to_provide(self, spec: ModelSpec, download_error: str | None) -> str:
        parts = []
        if download_error:
            parts.append(download_error + ".")
        elif not all(f.url for f in spec.files):
            parts.append(f"It cannot be downloaded automatically: {spec.note}.")
        elif not (self.allow_download and _network_allowed()):
            parts.append("Downloads are disabled (models.allow_download=false, VOXHEAR_OFFLINE or HF_HUB_OFFLINE).")
        parts.append(
            f"Put the files under a folder given by VOXHEAR_MODEL_DIR (as {spec.folder}/...) "
            f"or set models.paths.{spec.name}=PATH."
        )
        return " ".join(parts)

    def status(self, name: str, verify: bool = True) -> tuple[str, str]:
        """('ok' | 'missing' | 'bad-hash', detail), without downloading."""
        spec = self.spec(name)
        for location in self.locations(name):
            paths = [location.file_path(f) for f in spec.files]
            if all(p.is_file() for p in paths):
                if verify:
                    for f, p in zip(spec.files, paths):
                        if _hash_of(p) != f.sha256:
                            return "bad-hash", f"{p} (via {location.label}) does not match sha256 {f.sha256}"
                return "ok", f"{location.describe(spec)} (via {location.label})"
        return "missing", "not in " + ", ".join(loc.label for loc in self.locations(name))


def _auth_headers(url: str) -> dict[str, str]:
    token = os.environ.get("HF_TOKEN")
    if token and "huggingface.co" in url:
        return {"Authorization": f"Bearer {token}"}
    return {}
