"""Map an image reference to the command a local machine runs.

Any image whose repository is ``sample-app`` (``registry.fly.io/sample-app:v2``) runs
``python -m orchestrator.sampleapp``. Users map their own images in
``<state>/images.toml`` (``.localfly/images.toml``)::

    "registry.fly.io/my-api" = ["{python}", "-m", "my_api"]
    "worker" = ["/usr/local/bin/worker", "--port-from-env"]

Keys match the full repository with its registry, then the repository, then its last
path segment. ``{python}`` stands for the interpreter running the local Fly. The file is
read on every create, update and start, so an edit takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.localfly.util import ApiError, show

__all__ = ["SAMPLE_APP", "ImageRef", "parse_image", "resolve_command"]

SAMPLE_APP = "sample-app"
_BUILTIN: dict[str, list[str]] = {SAMPLE_APP: ["{python}", "-m", "orchestrator.sampleapp"]}


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


def _user_images(state_dir: Path) -> dict[str, list[str]]:
    path = state_dir / "images.toml"
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ApiError(422, f"{path}: cannot read the image map: {exc}") from exc
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
            raise ApiError(422, f"{path}: {key}: expected a non-empty list of strings")
        out[key] = list(value)
    return out


def resolve_command(image: str, state_dir: Path) -> list[str]:
    """Return the argv a machine running ``image`` executes.

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
                return [sys.executable if a == "{python}" else a for a in table[key]]
    raise ApiError(
        422,
        f"image {show(image)} is not known to the local Fly: map its repository "
        f"{show(ref.repository)} to a command in {state_dir / 'images.toml'}",
    )
