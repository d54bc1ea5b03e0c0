"""Edit the YAML config in place, keeping every comment, and replace the file atomically.

ruamel.yaml's round-trip mode keeps comments, key order, blank lines and quoting; PyYAML (used to
load and validate) drops comments, and the sample config's comments are its documentation.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError


class EditError(Exception):
    """The text could not be edited (not YAML, or a key path through a non-mapping)."""


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap long lines
    y.indent(mapping=2, sequence=4, offset=2)
    y.representer.add_representer(type(None), _null)  # keep `null`, not an empty value
    return y


def _null(representer: Any, _data: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def edit(text: str, changes: Mapping[str, Any]) -> str:
    """`text` with each dotted key set to its value (maps created as needed), comments kept."""
    y = _yaml()
    try:
        data = y.load(text)
    except YAMLError as exc:
        raise EditError(f"not valid YAML: {exc}") from None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise EditError("the top level is not a mapping")
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.get(part)
            if child is None:
                child = CommentedMap()
                node[part] = child
            if not isinstance(child, CommentedMap):
                raise EditError(f"{dotted}: {part} is not a mapping")
            node = child
        node[leaf] = value
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue()


def write_atomic(path: Path, text: str, mode: int = 0o640, group: int | None = None) -> None:
    """Replace `path` with `text`: temp file in the same directory, fsync, rename. An existing
    file's mode and owner are kept; a new one gets `mode` (and `group` when root)."""
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, (st.st_mode & 0o7777) if st else mode)
        if os.geteuid() == 0:
            if st is not None:
                os.chown(tmp, st.st_uid, st.st_gid)
            elif group is not None:
                os.chown(tmp, 0, group)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
