"""Fly's VM size rules, with the messages `invoke scale` and the loader show."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig import (
    FILE_KEYS,
    FLAG_KEYS,
    PRESETS,
    VMSize,
    allowed_cpus,
    allowed_memory,
    parse_preset,
    resolve_vm,
)

DASH = "\u2013"

EXPECTED_PRESETS = {
    "shared-cpu-1x": ("shared", 1, 256),
    "shared-cpu-2x": ("shared", 2, 512),
    "shared-cpu-4x": ("shared", 4, 1024),
    "shared-cpu-6x": ("shared", 6, 1536),
    "shared-cpu-8x": ("shared", 8, 2048),
    "performance-1x": ("performance", 1, 2048),
    "performance-2x": ("performance", 2, 4096),
    "performance-4x": ("performance", 4, 8192),
    "performance-6x": ("performance", 6, 12288),
    "performance-8x": ("performance", 8, 16384),
    "performance-10x": ("performance", 10, 20480),
    "performance-12x": ("performance", 12, 24576),
    "performance-14x": ("performance", 14, 28672),
    "performance-16x": ("performance", 16, 32768),
}


def _message(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as err:
        resolve_vm(**kwargs)  # type: ignore[arg-type]
    return str(err.value)


def test_presets_are_exactly_flys() -> None:
    assert list(PRESETS) == list(EXPECTED_PRESETS)


@pytest.mark.parametrize(("name", "expected"), EXPECTED_PRESETS.items())
def test_every_preset_resolves_to_its_default_size(
    name: str, expected: tuple[str, int, int]
) -> None:
    kind, cpus, memory = expected
    size = VMSize(cpu_kind=kind, cpus=cpus, memory_mb=memory, preset=name)
    assert parse_preset(name) == size
    assert resolve_vm(name) == size
    assert resolve_vm(cpu_kind=kind, cpus=cpus) == size
    assert resolve_vm(cpu_kind=kind, cpus=cpus, memory_mb=memory) == size


def test_default_is_shared_cpu_1x() -> None:
    assert resolve_vm() == VMSize("shared", 1, 256, "shared-cpu-1x")


def test_allowed_cpu_counts() -> None:
    assert allowed_cpus("shared") == (1, 2, 4, 6, 8)
    assert allowed_cpus("performance") == (1, 2, 4, 6, 8, 10, 12, 14, 16)


@pytest.mark.parametrize(
    ("kind", "cpus", "expected"),
    [
        ("shared", 1, (256, 2048, 256)),
        ("shared", 8, (2048, 16384, 256)),
        ("performance", 1, (2048, 8192, 1024)),
        ("performance", 16, (32768, 131072, 1024)),
    ],
)
def test_allowed_memory(kind: str, cpus: int, expected: tuple[int, int, int]) -> None:
    assert allowed_memory(kind, cpus) == expected


@pytest.mark.parametrize("kind", ["shared", "performance"])
def test_memory_boundaries_for_every_count(kind: str) -> None:
    for cpus in allowed_cpus(kind):
        low, high, step = allowed_memory(kind, cpus)
        assert resolve_vm(cpu_kind=kind, cpus=cpus, memory_mb=low).memory_mb == low
        assert resolve_vm(cpu_kind=kind, cpus=cpus, memory_mb=high).memory_mb == high
        for bad in (low - step, high + step):
            text = _message(cpu_kind=kind, cpus=cpus, memory_mb=bad, keys=FLAG_KEYS)
            assert text.startswith(f"--memory: {bad} MB is not allowed for ")
            assert f"allowed {low}{DASH}{high} MB in steps of {step}" in text


def test_performance_memory_moves_in_steps_of_1024_like_flyctl() -> None:
    # The sizing guide says 2048; flyctl accepts 1024 steps, and so does this tool.
    assert resolve_vm("performance-1x", memory_mb=3072).memory_mb == 3072
    text = _message(preset="performance-1x", memory_mb=2560, keys=FLAG_KEYS)
    assert text == (
        "--memory: 2560 MB is not allowed for performance-1x (1 performance CPU): "
        f"allowed 2048{DASH}8192 MB in steps of 1024 (nearest: 2048 MB)"
    )


def test_shared_memory_moves_in_steps_of_256() -> None:
    assert resolve_vm(memory_mb=768).memory_mb == 768
    text = _message(memory_mb=1000, keys=FLAG_KEYS)
    assert text.endswith("in steps of 256 (nearest: 1024 MB)")


def test_shared_cpu_1x_with_4096_mb() -> None:
    assert _message(preset="shared-cpu-1x", memory_mb=4096, keys=FLAG_KEYS) == (
        "--memory: 4096 MB is not allowed for shared-cpu-1x (1 shared CPU): "
        f"allowed 256{DASH}2048 MB in steps of 256"
    )


def test_memory_100_names_the_file_key() -> None:
    text = _message(memory_mb=100, where_prefix="regions/syd.toml", keys=FILE_KEYS)
    assert text == (
        "regions/syd.toml: memory_mb: 100 MB is not allowed for shared-cpu-1x (1 shared CPU): "
        f"allowed 256{DASH}2048 MB in steps of 256"
    )


def test_cpu_3_for_shared() -> None:
    assert _message(cpus=3, keys=FLAG_KEYS) == (
        "--cpu: 3 CPUs is not allowed for shared CPUs: allowed 1, 2, 4, 6, 8"
    )


@pytest.mark.parametrize("cpus", [32, 64, 128])
def test_large_performance_counts_are_refused(cpus: int) -> None:
    text = _message(cpu_kind="performance", cpus=cpus, keys=FLAG_KEYS)
    assert text == (
        f"--cpu: {cpus} CPUs is not allowed for performance CPUs: "
        "allowed 1, 2, 4, 6, 8, 10, 12, 14, 16"
    )


def test_unknown_preset_lists_the_valid_ones() -> None:
    text = _message(preset="performance-3x", keys=FLAG_KEYS)
    assert text.startswith(
        "--vm: unknown VM size 'performance-3x' (did you mean performance-2x or performance-4x?): "
        "allowed shared-cpu-1x, shared-cpu-2x,"
    )
    assert text.endswith("performance-14x, performance-16x")


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("performence-2x", "(did you mean performance-2x?)"),
        ("shared-cpu-16x", "(did you mean shared-cpu-8x?)"),
        ("a100-40gb", "GPU size 'a100-40gb' is not supported by this tool"),
    ],
)
def test_preset_mistakes(name: str, hint: str) -> None:
    assert hint in _message(preset=name, keys=FLAG_KEYS)


def test_unknown_cpu_kind() -> None:
    assert _message(cpu_kind="dedicated", keys=FLAG_KEYS) == (
        "--cpu-kind: unknown CPU kind 'dedicated': allowed shared, performance"
    )


def test_changing_cpus_from_a_preset_follows_the_default_memory() -> None:
    assert resolve_vm("shared-cpu-1x", cpus=4) == VMSize("shared", 4, 1024, "shared-cpu-4x")
    base = VMSize("shared", 1, 256, "shared-cpu-1x")
    assert resolve_vm(cpus=2, base=base) == VMSize("shared", 2, 512, "shared-cpu-2x")


def test_changing_cpus_keeps_custom_memory_that_still_fits() -> None:
    base = VMSize("shared", 1, 1024, None)
    assert resolve_vm(cpus=2, base=base) == VMSize("shared", 2, 1024, None)


def test_changing_cpus_with_custom_memory_that_no_longer_fits_blames_the_cpus() -> None:
    base = VMSize("performance", 2, 16384, None)
    assert _message(cpus=1, base=base, keys=FLAG_KEYS) == (
        "--cpu: 16384 MB is not allowed for performance-1x (1 performance CPU): "
        f"allowed 2048{DASH}8192 MB in steps of 1024; set --memory too"
    )


def test_a_preset_resets_memory_to_its_default() -> None:
    base = VMSize("shared", 1, 2048, None)
    assert resolve_vm("shared-cpu-2x", base=base) == VMSize("shared", 2, 512, "shared-cpu-2x")
    assert resolve_vm("shared-cpu-2x", memory_mb=2048, base=base).memory_mb == 2048


@given(
    kind=st.sampled_from(["shared", "performance"]),
    cpus=st.integers(min_value=1, max_value=130),
    # Half the draws on the 256 MB grid, so valid sizes come up as often as invalid ones.
    memory=st.integers(1, 140_000) | st.integers(1, 512).map(lambda k: k * 256),
)
def test_any_input_is_either_a_valid_size_or_one_line_error(
    kind: str, cpus: int, memory: int
) -> None:
    valid = cpus in allowed_cpus(kind)
    if valid:
        low, high, step = allowed_memory(kind, cpus)
        valid = low <= memory <= high and memory % step == 0
    if not valid:
        with pytest.raises(ConfigError) as err:
            resolve_vm(cpu_kind=kind, cpus=cpus, memory_mb=memory, keys=FLAG_KEYS)
        assert "\n" not in str(err.value)
        assert str(err.value).startswith(("--cpu: ", "--memory: "))
        return
    size = resolve_vm(cpu_kind=kind, cpus=cpus, memory_mb=memory, keys=FLAG_KEYS)
    assert cpus in allowed_cpus(kind)
    assert low <= size.memory_mb <= high
    assert size.memory_mb % step == 0
    assert (size.preset is not None) == (size.memory_mb == low)


def test_a_base_of_unknown_kind_is_refused_not_crashed() -> None:
    assert _message(memory_mb=512, base=VMSize("gpu", 8, 32768), keys=FLAG_KEYS) == (
        "--cpu-kind: unknown CPU kind 'gpu': allowed shared, performance"
    )
