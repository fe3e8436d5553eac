"""Print the cache key of the Python dependencies: their lists in pyproject.toml + Python.

scripts/setup.sh names the cached venv and wheelhouse with it; the install tests find the
wheelhouse with it. The version and tool settings are not part of it.
"""

import hashlib
import json
import sys
import tomllib
from pathlib import Path


def deps_key(pyproject: Path) -> str:
    project = tomllib.loads(pyproject.read_text())["project"]
    deps = [project.get("dependencies", []), project.get("optional-dependencies", {})]
    digest = hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest()[:16]
    return f"{digest}-py{sys.version_info[0]}{sys.version_info[1]}"


if __name__ == "__main__":
    print(deps_key(Path(__file__).resolve().parent.parent / "pyproject.toml"))
