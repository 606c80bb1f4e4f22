"""Print `constraints.txt`: `name==version` for every installed distribution that `vbs-backup[EXTRAS]` needs.

Run it with the Python of a venv where the project is installed (`scripts/lock.sh` does): it walks the
requirements of the installed `vbs-backup` distribution and of everything they pull in (markers evaluated
for this interpreter and platform), so stray packages in the venv are left out.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

EXTRAS = ("test", "postgres")


def closure(root: str, extras: tuple[str, ...]) -> dict[str, str]:
    environment = default_environment()
    pinned: dict[str, str] = {}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        dist = metadata.distribution(name)  # raises when a needed package is missing: the venv is broken
        if name != root:
            pinned[name] = dist.version
        for text in dist.requires or ():
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is not None and not any(
                marker.evaluate({**environment, "extra": extra}) for extra in wanted or ("",)
            ):
                continue
            todo.append((canonicalize_name(requirement.name), tuple(sorted(requirement.extras))))
    return pinned


def main() -> None:
    pins = closure("vbs-backup", EXTRAS)
    python = ".".join(platform.python_version_tuple()[:2])
    print("# Pinned versions of every dependency of vbs-backup[test,postgres], for reproducible installs:")
    print('#   pip install -c constraints.txt -e ".[test]"')
    print(f"# Locked on Python {python} ({sys.platform}); refresh with scripts/lock.sh (see README).")
    for name in sorted(pins):
        print(f"{name}=={pins[name]}")


if __name__ == "__main__":
    main()
