"""Map an image reference to the command a local machine runs.

Any image whose repository is ``sample-app`` (``registry.fly.io/sample-app:v2``) runs
``python -m orchestrator.sampleapp``. Users map their own images in
``<state>/images.toml`` (``.localfly/images.toml``)::

    "registry.fly.io/my-api" = ["{python}", "-m", "my_api"]
    "worker" = ["/usr/local/bin/worker", "--port-from-env"]

A list is the image's entrypoint (with no default command); a table gives both, as an image
has them: ``"api" = { entrypoint = ["{python}", "-m", "api"], cmd = ["serve"] }``. A machine
runs the entrypoint followed by the command; its config's ``init.cmd`` replaces the command
(that is how a ``[processes]`` group picks what it runs), ``init.entrypoint`` the entrypoint
(and, as in Docker, drops the image's command), and ``init.exec`` the whole line.

Keys match the full repository with its registry, then the repository, then its last
path segment. ``{python}`` stands for the interpreter running the local Fly. The file is
read on every create, update and start, so an edit takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.localfly.util import ApiError, show

__all__ = [
    "SAMPLE_APP",
    "ImageProcess",
    "ImageRef",
    "machine_argv",
    "parse_image",
    "resolve_command",
    "resolve_process",
]

SAMPLE_APP = "sample-app"


@dataclass(frozen=True, slots=True)
class ImageProcess:
    """What an image runs: its entrypoint and its default command (Docker's two halves).

    Attributes:
        entrypoint: the program and its fixed arguments.
        cmd: default arguments, replaced by a machine's ``init.cmd``.
    """

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()


_BUILTIN: dict[str, ImageProcess] = {
    SAMPLE_APP: ImageProcess(entrypoint=("{python}", "-m", "orchestrator.sampleapp"))
}


@dataclass(frozen=True, slots=True)
class ImageRef:
    """The parts of an image reference.

    Attributes:
        registry: ``registry.fly.io``, ``docker.io``...
        repository: the path without the registry (``sample-app``, ``acme/api``).
        tag: the tag (``latest`` when none was given).
        digest: ``sha256:...``; derived from the reference when it named none, so equal
            references have equal digests.
    """

    registry: str
    repository: str
    tag: str
    digest: str

    def to_api(self) -> dict[str, Any]:
        """Return Fly's ``image_ref`` object."""
        return {
            "registry": self.registry,
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "labels": {},
        }


def parse_image(ref: str) -> ImageRef:
    """Split an image reference into registry, repository, tag and digest."""
    rest, _, digest = ref.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag = "latest"
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
    else:
        registry, repository = "docker.io", rest
    if not digest:
        digest = "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
    return ImageRef(registry=registry, repository=repository, tag=tag, digest=digest)


def _strings(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    return None


def _user_images(state_dir: Path) -> dict[str, ImageProcess]:
    path = state_dir / "images.toml"
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ApiError(422, f"{path}: cannot read the image map: {exc}") from exc
    out: dict[str, ImageProcess] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            entrypoint = _strings(value.get("entrypoint"))
            cmd = value.get("cmd", [])
            if entrypoint is None or not (cmd == [] or _strings(cmd) is not None):
                raise ApiError(
                    422,
                    f"{path}: {key}: expected entrypoint = a non-empty list of strings "
                    "and cmd = a list of strings",
                )
            out[key] = ImageProcess(entrypoint=entrypoint, cmd=tuple(cmd))
            continue
        entrypoint = _strings(value)
        if entrypoint is None:
            raise ApiError(422, f"{path}: {key}: expected a non-empty list of strings")
        out[key] = ImageProcess(entrypoint=entrypoint)
    return out


def _interpreter(argv: Any) -> list[str]:
    return [sys.executable if a == "{python}" else str(a) for a in argv]


def resolve_process(image: str, state_dir: Path) -> ImageProcess:
    """Return the entrypoint and default command of ``image``.

    Raises ApiError 422 when no mapping names the image, as Fly fails a create whose
    image cannot be pulled.
    """
    ref = parse_image(image)
    candidates = (
        f"{ref.registry}/{ref.repository}",
        ref.repository,
        ref.repository.rsplit("/", 1)[-1],
    )
    for table in (_user_images(state_dir), _BUILTIN):
        for key in candidates:
            if key in table:
                found = table[key]
                return ImageProcess(entrypoint=tuple(_interpreter(found.entrypoint)), cmd=found.cmd)
    raise ApiError(
        422,
        f"image {show(image)} is not known to the local Fly: map its repository "
        f"{show(ref.repository)} to a command in {state_dir / 'images.toml'}",
    )


def resolve_command(image: str, state_dir: Path) -> list[str]:
    """Return the argv a machine running ``image`` with no ``init`` executes.

    Raises ApiError 422 when no mapping names the image.
    """
    process = resolve_process(image, state_dir)
    return [*process.entrypoint, *process.cmd]


def machine_argv(config: Mapping[str, Any], state_dir: Path) -> list[str]:
    """Return the argv of a machine with ``config``, applying ``init`` as Fly does.

    ``init.exec`` replaces everything; otherwise ``init.entrypoint`` replaces the image's
    entrypoint and ``init.cmd`` its command (flyctl puts a process group's command there).

    Raises ApiError 422 when the image is unknown and ``init.exec`` is not set.
    """
    init = config.get("init") or {}
    if init.get("exec"):
        return _interpreter(init["exec"])
    process = resolve_process(str(config["image"]), state_dir)
    entrypoint = list(process.entrypoint)
    cmd = list(process.cmd)
    if init.get("entrypoint"):
        # Docker's rule, which Fly follows: a new entrypoint does not inherit the old command.
        entrypoint, cmd = _interpreter(init["entrypoint"]), []
    if init.get("cmd"):
        cmd = [str(a) for a in init["cmd"]]
    return [*entrypoint, *cmd]
