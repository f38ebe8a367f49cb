"""Write ``invoke scale``'s changes back into ``regions/<code>.toml``, keeping its comments.

The flags are checked against Fly's rules first (the same messages as the loader, naming
``--count``, ``--vm``, ``--cpu``, ``--memory`` and ``--volume-size``), then the edited file is
validated together with the rest of the fleet in memory, and only then written, atomically.
Nothing is written when anything is wrong, or when nothing would change.

Flag semantics: ``--vm`` sets the preset and resets memory to its default unless ``--memory`` is
given; ``--cpu N`` changes the CPU count within the current kind (a size at its default memory
moves to the new count's default, a custom memory is kept if it still fits); ``--memory`` sets
memory.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import tomlkit
from tomlkit.toml_document import TOMLDocument

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig.load import REGIONS_DIR, load_spec
from orchestrator.fleetconfig.model import RegionSpec, VMSize
from orchestrator.fleetconfig.regions import validate_region
from orchestrator.fleetconfig.sizes import FLAG_KEYS, preset_for, resolve_vm
from orchestrator.fleetconfig.values import MAX_COUNT, MAX_VOLUME_GB

__all__ = ["FieldChange", "RegionEdit", "update_region_file"]

Value = int | str | None


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One desired value of a region that changes.

    Attributes:
        key: ``count``, ``cpu_kind``, ``cpus``, ``memory_mb`` or ``volume_size_gb``.
        old: the value before.
        new: the value after.
    """

    key: str
    old: Value
    new: Value


@dataclass(frozen=True, slots=True)
class RegionEdit:
    """What ``invoke scale`` changed (or would change) in one region file.

    Attributes:
        region: the region code.
        path: the file, relative to the root (``regions/syd.toml``).
        changes: the values that change, in a fixed key order; empty when nothing changes.
        before: the region as it was.
        after: the region as it is (or would be) after the edit.
        written: whether the file was written (false on a dry run or when nothing changed).
        group: the process group whose ``[groups.<name>]`` table changed, or ``None`` for the
            file's flat keys.
        text: the file's text after the edit (to read the fleet as it would be).
    """

    region: str
    path: str
    changes: tuple[FieldChange, ...]
    before: RegionSpec
    after: RegionSpec
    written: bool
    group: str | None = None
    text: str = field(default="", repr=False)


def _check_flag_int(value: int, option: str, low: int, high: int, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"expected a whole number from {low} to {high}{unit}, got {value!r}", option=option
        )


def _place(doc: TOMLDocument, key: str, value: int | str, after: tuple[str, ...]) -> TOMLDocument:
    """Set ``key``, or add it after the first of ``after`` present (so it lands near its kin)."""
    if key in doc:
        # Re-setting an equal value would still re-render it (quotes, spacing): leave it be.
        if doc[key] != value:
            doc[key] = value
        return doc
    anchors = [k for k in after if k in doc]
    if not anchors:
        doc.add(key, value)
        return doc
    # tomlkit has no public insert-after: put the new line after the anchor's line in the text.
    # Plain keys precede every table, so the first line assigning the anchor is the top-level one.
    text = doc.as_string()
    line = re.search(rf"^[ \t]*{re.escape(anchors[0])}[ \t]*=.*\n?", text, re.MULTILINE)
    if line is None:
        doc.add(key, value)
        return doc
    head = text[: line.end()] if text[: line.end()].endswith("\n") else text[: line.end()] + "\n"
    added = tomlkit.dumps({key: value})
    return tomlkit.parse(head + added + text[line.end() :])


def _remove(doc: TOMLDocument, *keys: str) -> None:
    for key in keys:
        if key in doc:
            del doc[key]


def _render(
    original: str,
    *,
    count: int | None,
    size: VMSize | None,
    size_flags: tuple[str | None, int | None, int | None],
    volume_size_gb: int | None,
) -> str:
    """Return the region file's text with the new values, in the style the file already uses."""
    # A byte-order mark is not TOML; set it aside and put it back so the file keeps it.
    bom = "\ufeff" if original.startswith("\ufeff") else ""
    doc = tomlkit.parse(original.removeprefix(bom))
    if count is not None:
        doc = _place(doc, "count", count, ())
    if size is not None:
        vm_flag, cpu_flag, memory_flag = size_flags
        if vm_flag is not None or "vm" in doc:
            # Preset style: a preset names kind and CPUs; memory_mb carries any custom memory.
            doc = _place(doc, "vm", preset_for(size.cpu_kind, size.cpus), ("count", "role"))
            _remove(doc, "cpu_kind", "cpus")
        elif cpu_flag is not None:
            doc = _place(doc, "cpus", size.cpus, ("cpu_kind", "vm", "count", "role"))
        if memory_flag is not None or "memory_mb" in doc or size.preset is None:
            doc = _place(doc, "memory_mb", size.memory_mb, ("cpus", "cpu_kind", "vm", "count"))
    if volume_size_gb is not None:
        doc = _place(doc, "volume_size_gb", volume_size_gb, ("memory_mb", "cpus", "vm", "count"))
    text = bom + tomlkit.dumps(doc)
    if "\r\n" in original:
        # tomlkit writes new lines with "\n"; keep a CRLF file CRLF throughout.
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return text


def _render_group(
    original: str,
    group: str,
    *,
    count: int | None,
    size: VMSize | None,
    volume_size_gb: int | None,
) -> str:
    """Return the region file's text with new values in its ``[groups.<group>]`` table.

    A size is written whole (``vm`` and ``memory_mb``): a group table that sets any size key
    sizes the group on its own, so it must not lean on the file's flat keys.
    """
    bom = "\ufeff" if original.startswith("\ufeff") else ""
    doc = tomlkit.parse(original.removeprefix(bom))
    if "groups" not in doc:
        doc.add(tomlkit.nl())
        doc.add("groups", tomlkit.table(is_super_table=True))
    groups = doc["groups"]
    assert isinstance(groups, dict)  # load_spec accepted the file: [groups] holds tables
    if group not in groups:
        groups[group] = tomlkit.table()
    table = groups[group]
    assert isinstance(table, dict)
    values: list[tuple[str, int | str]] = []
    if count is not None:
        values.append(("count", count))
    if size is not None:
        values.append(("vm", preset_for(size.cpu_kind, size.cpus)))
        values.append(("memory_mb", size.memory_mb))
        for key in ("cpu_kind", "cpus"):
            table.pop(key, None)
    if volume_size_gb is not None:
        values.append(("volume_size_gb", volume_size_gb))
    for key, value in values:
        if table.get(key) != value:
            table[key] = value
    text = bom + tomlkit.dumps(doc)
    if "\r\n" in original:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return text


def _changes(before: RegionSpec, after: RegionSpec) -> tuple[FieldChange, ...]:
    pairs: list[tuple[str, Value, Value]] = [
        ("count", before.count, after.count),
        ("cpu_kind", before.vm.cpu_kind, after.vm.cpu_kind),
        ("cpus", before.vm.cpus, after.vm.cpus),
        ("memory_mb", before.vm.memory_mb, after.vm.memory_mb),
        ("volume_size_gb", before.volume_size_gb, after.volume_size_gb),
    ]
    return tuple(FieldChange(key, old, new) for key, old, new in pairs if old != new)


def _write_atomically(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def update_region_file(
    root: Path | str,
    region: str,
    *,
    count: int | None = None,
    vm: str | None = None,
    cpus: int | None = None,
    memory_mb: int | None = None,
    volume_size_gb: int | None = None,
    dry_run: bool = False,
    group: str | None = None,
) -> RegionEdit:
    """Change a region's desired count, size or volume size in ``regions/<code>.toml``.

    Args:
        root: the directory holding ``fly.toml`` and ``regions/``.
        region: the region code (``--region``).
        count: machines wanted (``--count``).
        vm: a preset (``--vm``); memory resets to its default unless ``memory_mb`` is given.
        cpus: a CPU count within the current kind (``--cpu``).
        memory_mb: memory in MB (``--memory``).
        volume_size_gb: each machine's volume size in GB (``--volume-size``); Fly volumes
            only grow, so a smaller value is refused.
        dry_run: compute and validate the changes without writing.
        group: a process group (``--group``): the change goes into the file's
            ``[groups.<name>]`` table and applies to that group only.

    Returns:
        What changed; ``written`` says whether the file was written.

    Raises:
        ConfigError: an option is out of Fly's rules (naming the option), the region has no file,
            or the fleet's files are invalid; nothing has been written.
    """
    root = Path(root)
    code = validate_region(region, option="region").code
    spec = load_spec(root)
    if code not in spec.regions:
        raise ConfigError(
            f"{code!r} is not in the fleet (no {REGIONS_DIR}/{code}.toml); "
            f"the fleet has {', '.join(spec.regions)}",
            option="region",
        )
    if group is not None and group not in spec.group_names:
        raise ConfigError(
            f"{group!r} is not a process group: fly.toml defines {', '.join(spec.group_names)}",
            option="group",
        )
    view = spec.for_group(group) if group is not None else spec
    before = view.regions[code]
    if count is not None:
        _check_flag_int(count, "count", 0, MAX_COUNT)
        if code == spec.primary_region and count == 0:
            raise ConfigError(
                f"the primary region {code} needs at least 1 machine (it takes the writes)",
                option="count",
            )
    size: VMSize | None = None
    if vm is not None or cpus is not None or memory_mb is not None:
        if cpus is not None:
            _check_flag_int(cpus, "cpus", 1, 128)
        if memory_mb is not None:
            _check_flag_int(memory_mb, "memory_mb", 1, 10**7, " MB")
        size = resolve_vm(vm, None, cpus, memory_mb, keys=FLAG_KEYS, base=before.vm)
    if volume_size_gb is not None:
        _check_flag_int(volume_size_gb, "volume_size_gb", 1, MAX_VOLUME_GB, " GB")
        if view.mount is None:
            whose = f" for process group {group!r}" if group is not None else ""
            raise ConfigError(
                f"fly.toml has no [[mounts]]{whose}, so machines get no volume",
                option="volume_size_gb",
            )
        if volume_size_gb < before.volume_size_gb:
            raise ConfigError(
                f"Fly volumes only grow: {volume_size_gb} GB is below the current "
                f"{before.volume_size_gb} GB",
                option="volume_size_gb",
            )

    # Edit what a symlinked region file points at, rather than replacing the link.
    path = (root / before.source).resolve()
    original = path.read_bytes().decode("utf-8")
    if group is not None:
        text = _render_group(original, group, count=count, size=size, volume_size_gb=volume_size_gb)
    else:
        text = _render(
            original,
            count=count,
            size=size,
            size_flags=(vm, cpus, memory_mb),
            volume_size_gb=volume_size_gb,
        )
    # Validate the edited file with the whole fleet before anything touches the disk.
    edited = load_spec(root, overlay={before.source: text})
    after = (edited.for_group(group) if group is not None else edited).regions[code]
    expected = (
        count if count is not None else before.count,
        size if size is not None else before.vm,
        volume_size_gb if volume_size_gb is not None else before.volume_size_gb,
    )
    if (after.count, after.vm, after.volume_size_gb) != expected:
        raise AssertionError(f"edited {before.source} reads back as {after}, not {expected}")
    changes = _changes(before, after)
    written = bool(changes) and not dry_run and text != original
    if written:
        _write_atomically(path, text)
    return RegionEdit(code, before.source, changes, before, after, written, group, text)
