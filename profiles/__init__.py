"""Hardware profiles: YAML files beside this module, plus any a user adds.

A profile is named by its file stem (`mobile-cpu`) or given as a path to a YAML file. Users add their own by
passing a path, or by putting YAML files in a folder named by the EDGESMITH_PROFILES environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgesmith.config import Profile, parse, read_yaml
from edgesmith.errors import EdgesmithError
from edgesmith.runfolder import check_name

BUILTIN = Path(__file__).parent


def _search_dirs() -> list[Path]:
    extra = os.environ.get("EDGESMITH_PROFILES")
    return ([Path(extra)] if extra else []) + [BUILTIN]


def available() -> dict[str, Path]:
    """Profile name -> YAML path; a user's folder wins over the built-in one."""
    found: dict[str, Path] = {}
    for folder in reversed(_search_dirs()):
        for path in sorted(folder.glob("*.yaml")):
            found[path.stem] = path
    return found


def load(name_or_path: str) -> Profile:
    """Load and validate a profile by name or path; unknown names list the known ones."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        known = available()
        if name_or_path not in known:
            raise EdgesmithError(
                f"unknown profile {name_or_path!r}; choose one of {sorted(known)} or pass a profile YAML path"
            )
        path = known[name_or_path]
    data = read_yaml(path)
    if "name" not in data:  # the file name becomes the name (and part of folder names): say where it came from
        try:
            data["name"] = check_name(path.stem, "profile name")
        except ValueError as err:
            raise EdgesmithError(f"profile {path}: {err} (taken from the file name); rename the file or add a `name:` key") from None
    return parse(Profile, data, f"profile {path}")
