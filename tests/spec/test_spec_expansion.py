"""Named configs: list-valued fields expand in order; ops concatenate them by priority."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewriter.spec.loader import load_spec


def test_cartesian_product_mode_slowest(write_spec) -> None:
    spec = load_spec(write_spec("""
        name: T
        configs:
          q: {bits: 8, mode: [asymmetric, symmetric], granularity: [perchannel, pertensor]}
        """))
    assert [(c.name, c.mode, c.granularity) for c in spec.configs["q"]] == [
        ("q", "asymmetric", "perchannel"), ("q", "asymmetric", "pertensor"),
        ("q", "symmetric", "perchannel"), ("q", "symmetric", "pertensor"),
    ]


def test_op_lists_concatenate_in_priority_order(write_spec) -> None:
    spec = load_spec(write_spec("""
        name: T
        configs:
          a: {bits: 8, mode: [symmetric, asymmetric], granularity: pertensor}
          b: {bits: 4, mode: symmetric, granularity: perchannel}
        ops:
          Conv: {activations: [b, a], weights: [a], outputs: [b]}
        """))
    conv = spec.op("Conv")
    assert [(c.name, c.bits, c.mode) for c in conv.activations] == [
        ("b", 4, "symmetric"), ("a", 8, "symmetric"), ("a", 8, "asymmetric")]
    assert [c.name for c in conv.weights] == ["a", "a"]
    assert [c.name for c in conv.outputs] == ["b"]
    assert conv.quantizable and conv.ports is None and conv.pass_through == "first"


def test_level_options(write_spec) -> None:
    spec = load_spec(write_spec("""
        name: T
        configs:
          narrow: {bits: 4, mode: symmetric, granularity: pertensor, narrow_range: true}
          explicit: {bits: 8, mode: symmetric, granularity: pertensor, level_low: 0, level_high: 255}
          default: {bits: 8, mode: asymmetric, granularity: pertensor, unified_zeropoint: true}
          forced: {bits: 8, mode: symmetric, granularity: pertensor, signed: true}
        """))
    narrow, explicit, default, forced = (spec.configs[n][0] for n in ("narrow", "explicit", "default", "forced"))
    assert (narrow.level_low, narrow.level_high, narrow.signed) == (-7, 7, True)
    assert (explicit.level_low, explicit.level_high, explicit.signed) == (0, 255, False)
    assert (default.level_low, default.level_high, default.signed,
            default.unified_zeropoint) == (None, None, None, True)
    assert forced.signed is True and forced.level_low is None


def test_yaml_number_forms_and_locations(write_spec) -> None:
    path = write_spec("""
        name: T
        configs:
          q: {bits: 0x8, mode: symmetric, granularity: pertensor, level_low: -1_00, level_high: 100}
        ops:
          Relu: {activations: [q]}
        """)
    spec = load_spec(path)
    q = spec.configs["q"][0]
    assert (q.bits, q.level_low) == (8, -100)
    assert (q.loc.file, q.loc.line, q.loc.column) == (str(path.resolve()), 3, 3)
    assert (spec.op("Relu").loc.line, spec.op("Relu").loc.column) == (5, 3)


def test_agnostic_and_unified(write_spec) -> None:
    spec = load_spec(write_spec("""
        name: T
        configs:
          q: {bits: 8, mode: symmetric, granularity: pertensor}
        ops:
          Concat: {agnostic: true, pass_through: all, unified_scales: all}
          Pad: {agnostic: true, pass_through: non_const}
          LSTM: {activations: [q], weights: [q], ports: [0, 1, 2, 5], unified_scales: [[0, 5], [1, 2]]}
          Softmax: {note: "kept in float on purpose"}
        """))
    assert spec.op("Concat").agnostic and not spec.op("Concat").quantizable
    assert spec.op("Concat").unified_scales == "all"
    assert spec.op("Pad").pass_through == "non_const"
    assert spec.op("LSTM").unified_scales == ((0, 5), (1, 2))
    assert spec.op("LSTM").ports == (0, 1, 2, 5)
    assert not spec.op("Softmax").quantizable and spec.op("Softmax").note == "kept in float on purpose"


def test_variants_are_completed_from_their_op(write_spec) -> None:
    path = write_spec("""
        name: T
        configs:
          a: {bits: 8, mode: symmetric, granularity: pertensor}
          c: {bits: 8, mode: symmetric, granularity: perchannel}
          w: {bits: 8, mode: symmetric, granularity: perchannel}
        ops:
          Conv:
            activations: [a]
            weights: [w]
            variants:
              - {name: depthwise, when: "attr.group > 1", activations: [c]}
              - {name: off, when: "attr.group == 7", activations: [], weights: null}
        """)
    spec = load_spec(path)
    depthwise, off = spec.op("Conv").variants
    assert [c.name for c in depthwise.activations] == ["c"]
    assert [c.name for c in depthwise.weights] == ["w"]
    assert depthwise.when == "attr.group > 1"
    assert depthwise.loc.line == 11
    assert off.activations == () and off.weights == ()


def test_null_op_keys_reset_to_defaults(write_spec) -> None:
    spec = load_spec(write_spec("""
        name: T
        description: null
        ops:
          MaxPool: {agnostic: true, ports: null, note: null, unified_scales: null}
        """))
    assert spec.description == ""
    entry = spec.op("MaxPool")
    assert entry.ports is None and entry.note == "" and entry.unified_scales is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(modes=st.permutations(["symmetric", "asymmetric"]).flatmap(lambda p: st.integers(1, 2).map(lambda n: p[:n])),
       grans=st.permutations(["pertensor", "perchannel"]).flatmap(lambda p: st.integers(1, 2).map(lambda n: p[:n])),
       bits=st.integers(2, 32))
def test_expansion_is_the_ordered_product(write_spec, modes: list[str], grans: list[str], bits: int) -> None:
    spec = load_spec(write_spec(f"name: T\nops:\n  Conv: {{activations: [q]}}\n"  # used before it is defined
                                f"configs:\n  q: {{bits: {bits}, mode: {modes}, granularity: {grans}}}\n"))
    expected = [(m, g) for m in modes for g in grans]
    assert [(c.mode, c.granularity) for c in spec.configs["q"]] == expected
    assert [(c.mode, c.granularity) for c in spec.op("Conv").activations] == expected
    assert all(c.bits == bits and c.name == "q" for c in spec.configs["q"])
