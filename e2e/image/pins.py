"""Print the project's runtime dependencies pinned to the versions installed here.

    python e2e/image/pins.py pyproject.toml > requirements.txt

Run with the project's .venv python: it walks [project].dependencies (with their extras)
through the installed distributions' metadata, markers evaluated for this interpreter, and
prints `name==version` for the whole closure, sorted. The image then gets exactly the
versions the tests ran against, and the list is the cache key of the image's deps layer
(test tools installed in the .venv do not change it).
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(requirements: list[str]) -> dict[str, str]:
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(Requirement(r), frozenset[str]()) for r in requirements]
    while todo:
        req, _ = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing = f"{req.name} is not installed here (run scripts/bootstrap.sh)"
            raise SystemExit(missing) from None
        pins[name] = dist.version
        for spec in dist.requires or []:
            child = Requirement(spec)
            if child.marker is None:
                todo.append((child, frozenset()))
                continue
            # A requirement applies if its marker holds with no extra or one we asked for.
            for extra in ["", *req.extras]:
                if child.marker.evaluate({"extra": extra}):
                    todo.append((child, frozenset()))
                    break
    return pins


def main() -> int:
    with open(sys.argv[1], "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    for name, version in sorted(closure(deps).items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
