"""The optional extras (pyproject's phone and setup): what each installs, and the one-line error
a command gives when its extra is missing. Only the commands that need an extra import it."""

from __future__ import annotations

import sys

EX_UNAVAILABLE = 69  # sysexits: a required program or package is not there; a restart cannot help

# extra -> its requirements, as in pyproject.toml's [project.optional-dependencies]
EXTRAS: dict[str, tuple[str, ...]] = {
    "phone": ("twilio>=9.0", "aiohttp>=3.9"),
    "setup": ("ruamel.yaml>=0.18",),
}
# top-level import name -> the extra that installs it
PROVIDED_BY = {"twilio": "phone", "aiohttp": "phone", "ruamel": "setup"}
# how scripts/install.sh installs each extra
INSTALL_SH = {
    "phone": "sudo scripts/install.sh --with-phone",
    "setup": "sudo scripts/install.sh",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The extra whose package `exc` says is missing, or None if it is no extra's."""
    top = (exc.name or "").split(".")[0]
    return PROVIDED_BY.get(top)


def message(command: str, extra: str) -> str:
    """What `voicebox COMMAND` prints when `extra` is not installed: the two ways to install it."""
    reqs = " ".join(f"'{r}'" for r in EXTRAS[extra])
    return (
        f"voicebox {command} needs the {extra} extra, which is not installed: re-run "
        f"{INSTALL_SH[extra]} from the voicebox checkout, or {sys.executable} -m pip install {reqs}"
    )
