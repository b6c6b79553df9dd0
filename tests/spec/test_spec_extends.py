"""extends: configs replace by name, op entries merge key by key, names resolve after merging."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rewriter.spec.loader import builtin_specs_dir, load_spec, resolve_target
from spec_helpers import only_error

PARENT = """
    name: PARENT
    description: the parent
    rules: [parent.rules]
    configs:
      q8_a: {bits: 8, mode: [symmetric, asymmetric], granularity: pertensor}
      q8_w: {bits: 8, mode: symmetric, granularity: perchannel}
    ops:
      Conv: {activations: [q8_a], weights: [q8_w], ports: [0, 1], note: parent conv}
      Add: {activations: [q8_a], weights: [q8_w]}
      MaxPool: {agnostic: true}
      LSTM: {activations: [q8_a], weights: [q8_w]}
    """


@pytest.fixture
def parent(write_spec, tmp_path: Path) -> Path:
    (tmp_path / "parent.rules").write_text("# parent rules\n")
    (tmp_path / "child.rules").write_text("# child rules\n")
    return write_spec(PARENT, "parent.yaml")


def test_child_overrides_one_key(write_spec, parent: Path) -> None:
    child = load_spec(write_spec("""
        name: CHILD
        extends: parent
        ops:
          Conv: {ports: [0]}
        """, "child.yaml"))
    conv = child.op("Conv")
    assert conv.ports == (0,)
    assert [c.name for c in conv.activations] == ["q8_a", "q8_a"]  # inherited
    assert conv.note == "parent conv"
    assert conv.loc.file.endswith("child.yaml")


def test_null_removes_an_inherited_op(write_spec, parent: Path) -> None:
    child = load_spec(write_spec("""
        name: CHILD
        extends: parent
        ops:
          LSTM: null
        """, "child.yaml"))
    assert child.op("LSTM") is None
    assert list(child.ops) == ["Conv", "Add", "MaxPool"]


def test_config_redefinition_propagates_to_inherited_ops(write_spec, parent: Path) -> None:
    child = load_spec(write_spec("""
        name: CHILD
        extends: parent
        configs:
          q8_a: {bits: 8, mode: asymmetric, granularity: perchannel}
        """, "child.yaml"))
    for op_type in ("Conv", "Add", "LSTM"):
        assert [(c.mode, c.granularity) for c in child.op(op_type).activations] == [("asymmetric", "perchannel")]
    assert list(child.configs) == ["q8_a", "q8_w"]  # the parent's order, redefinition in place


def test_order_is_parents_first(write_spec, parent: Path) -> None:
    child = load_spec(write_spec("""
        name: CHILD
        extends: parent
        configs:
          extra: {bits: 4, mode: symmetric, granularity: pertensor}
        ops:
          Relu: {activations: [extra]}
          Add: {outputs: [extra]}
        """, "child.yaml"))
    assert list(child.configs) == ["q8_a", "q8_w", "extra"]
    assert list(child.ops) == ["Conv", "Add", "MaxPool", "LSTM", "Relu"]
    assert [c.name for c in child.op("Add").outputs] == ["extra"]
    assert [c.name for c in child.op("Add").activations] == ["q8_a", "q8_a"]


def test_rules_replace_and_description_is_own(write_spec, parent: Path, tmp_path: Path) -> None:
    inherits = load_spec(write_spec("name: A\nextends: parent\n", "a.yaml"))
    assert inherits.rules == (str(tmp_path / "parent.rules"),)
    assert inherits.description == ""
    replaces = load_spec(write_spec("name: B\nextends: parent\nrules: [child.rules]\n", "b.yaml"))
    assert replaces.rules == (str(tmp_path / "child.rules"),)
    empties = load_spec(write_spec("name: C\nextends: parent\nrules: []\n", "c.yaml"))
    assert empties.rules == ()


def test_chain_names_nearest_first(write_spec, parent: Path) -> None:
    write_spec("name: MIDDLE\nextends: PARENT\n", "middle.yaml")  # case-insensitive file name
    leaf = load_spec(write_spec("name: LEAF\nextends: ./middle.yaml\n", "leaf.yaml"))
    assert leaf.extends == ("MIDDLE", "PARENT")
    assert leaf.op("Conv") is not None


def test_user_spec_extends_builtin_by_path(write_spec, tmp_path: Path) -> None:
    cpu_yaml = builtin_specs_dir() / "cpu.yaml"
    relative = os.path.relpath(cpu_yaml, tmp_path / "sub")
    spec = load_spec(write_spec(f"""
        name: MYCPU
        extends: {relative}
        ops:
          Softmax: {{activations: [q8_a]}}
        """, "sub/mycpu.yaml"))
    assert spec.extends == ("CPU",)
    assert spec.rules == load_spec(cpu_yaml).rules  # the parent's, resolved beside the parent
    assert spec.op("Softmax").quantizable and spec.op("Conv").variants


def test_user_spec_extends_builtin_by_name(write_spec) -> None:
    spec = load_spec(write_spec("""
        name: MYGPU
        extends: GPU
        ops:
          Gather: null
        """))
    assert spec.extends == ("GPU", "CPU")
    assert spec.op("Gather") is None and spec.op("LSTM") is None


def test_name_beside_the_file_wins_over_builtin(write_spec) -> None:
    write_spec("name: LOCALCPU\n", "cpu.yaml")
    spec = load_spec(write_spec("name: X\nextends: cpu\n", "x.yaml"))
    assert spec.extends == ("LOCALCPU",)


def test_own_cpu_yaml_extending_cpu_means_the_builtin(write_spec) -> None:
    spec = load_spec(write_spec("name: CPU\ndescription: tuned\nextends: cpu\nops: {GRU: null}\n", "cpu.yaml"))
    assert spec.extends == ("CPU",)
    assert spec.op("GRU") is None and spec.op("LSTM") is not None


def test_missing_parent_name(write_spec) -> None:
    err = only_error(write_spec("name: X\nextends: cpux\n"))
    assert (err.loc.line, err.loc.column) == (2, 10)
    assert "no spec named 'cpux'" in err.message
    assert "ANY, CPU, GNA, GPU, ORT, VPU" in err.message and "did you mean 'CPU'?" in err.message


def test_missing_parent_path(write_spec) -> None:
    err = only_error(write_spec("name: X\nextends: ../nowhere/p.yaml\n"))
    assert err.loc.line == 2 and "spec file '../nowhere/p.yaml' not found" in err.message


def test_cycle_names_the_chain(write_spec) -> None:
    write_spec("name: A\nextends: b\n", "a.yaml")
    write_spec("name: B\nextends: c.yaml\n", "b.yaml")
    path = write_spec("name: C\nextends: a\n", "c.yaml")
    err = only_error(path)
    assert "extends cycle: c.yaml (C) -> a.yaml (A) -> b.yaml (B) -> c.yaml" in err.message
    assert err.loc.file.endswith("b.yaml") and err.loc.line == 2


def test_self_cycle_by_path(write_spec) -> None:
    err = only_error(write_spec("name: A\nextends: ./a.yaml\n", "a.yaml"))
    assert "extends cycle: a.yaml (A) -> a.yaml" in err.message


def test_errors_in_parent_are_reported_with_its_location(write_spec) -> None:
    write_spec("name: P\nconfigs:\n  q: {bits: 1, mode: symmetric, granularity: pertensor}\n", "p.yaml")
    err = only_error(write_spec("name: C\nextends: p\nops:\n  Relu: {activations: [q]}\n", "c.yaml"))
    assert err.loc.file.endswith("p.yaml") and err.loc.line == 3
    assert "bits must be between 2 and 32" in err.message


def test_unparsable_parent_stops_before_reference_checks(write_spec) -> None:
    write_spec("name: P\nconfigs: [\n", "p.yaml")
    err = only_error(write_spec("name: C\nextends: p\nops:\n  Relu: {activations: [q]}\n", "c.yaml"))
    assert err.loc.file.endswith("p.yaml") and "YAML syntax error" in err.message


def test_removing_what_is_not_inherited(write_spec, parent: Path) -> None:
    err = only_error(write_spec("name: C\nextends: parent\nops:\n  Gather: null\n", "c.yaml"))
    assert err.loc.line == 4 and "PARENT" in err.message and "has no 'Gather'" in err.message
    err = only_error(write_spec("name: D\nops:\n  Gather: null\n", "d.yaml"))
    assert "extends nothing" in err.message


def test_resolve_target_then_load(parent: Path) -> None:
    assert resolve_target(str(parent)) == parent.resolve()
    assert load_spec(resolve_target(str(parent))).name == "PARENT"
