"""Check that this Python environment has every pin of the given requirement files at exactly its version.

    python deploy/check_lock.py requirements.lock deploy/requirements-cluster.txt

Run by the Dockerfile after the install (so an image never ships a stack that drifted from the
lock) and by tests/deploy against the development venv. Only `name==version` lines count; extras
(`ray[default]==2.60.0`) are read as the package itself. Exit status 1 and one line per
difference when anything is missing or at another version. Standard library only.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def canonical(name: str) -> str:
    """PEP 503 normalised project name (`PyYAML` and `pyyaml`, `smart_open` and `smart-open` are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str | Path) -> dict[str, str]:
    """{canonical name: version} of the `name==version` lines of a requirements file."""
    pins: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def differences(pins: dict[str, str]) -> list[str]:
    problems = []
    for name, wanted in sorted(pins.items()):
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed (pinned {wanted})")
            continue
        if found != wanted:
            problems.append(f"{name}: {found} installed, pinned {wanted}")
    return problems


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    problems = []
    for path in argv:
        problems += [f"{path}: {p}" for p in differences(read_pins(path))]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"all pins of {', '.join(argv)} installed at their versions")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
