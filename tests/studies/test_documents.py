"""nanbench.studies.documents, and the example definitions, against the documents themselves.

The documents are parsed from the Markdown beside the repository (../shared/seeds). Without
them these tests fail with one line saying so, unless NANBENCH_NO_SEEDS=1 says they are absent
on purpose (then they are skipped, with that reason).
"""

from __future__ import annotations

import ast
import os
import re

import numpy as np
import pytest

from nanbench.config import ROOT
from nanbench.studies.documents import CODE, make_data
from nanbench.studies.examples.definitions import EXAMPLES

SEEDS = ROOT.parent / "shared" / "seeds"
DOCS = {"doc000": "doc000-*.md", "doc003": "doc003-*.md"}
NO_SEEDS = "NANBENCH_NO_SEEDS"


def document_blocks(doc: str) -> list[str]:
    """The python code blocks of a document, in order (example i is block i)."""
    path = next(SEEDS.glob(DOCS[doc]), None) if SEEDS.is_dir() else None
    if path is None:
        where = f"no {DOCS[doc]} in {SEEDS}"
        if os.environ.get(NO_SEEDS) == "1":
            pytest.skip(f"{where} ({NO_SEEDS}=1: the documents are absent on purpose)")
        pytest.fail(f"{where}: put the documents there, or set {NO_SEEDS}=1 to skip these tests", pytrace=False)
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def _dotted(node) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def describe(code: str) -> dict:
    """What a code block passes to Keras: Dense layers, optimizer, loss, fit's arrays and epochs;
    and the namespace of the statements that build the data (everything before `model = ...`)."""
    tree = ast.parse(code)
    optimizers = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call):
            name = _dotted(stmt.value.func)
            if ".optimizers." in name:
                optimizers[stmt.targets[0].id] = (name.rsplit(".", 1)[-1], {
                    k.arg: ast.literal_eval(k.value) for k in stmt.value.keywords})
    data_statements = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == "model" for t in stmt.targets):
            break
        if not isinstance(stmt, (ast.Import, ast.ImportFrom)):
            data_statements.append(stmt)
    out = {"layers": [], "optimizer": None, "loss": None, "epochs": None, "fit_args": None}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        kwargs = {k.arg: k.value for k in node.keywords}
        if name.endswith("layers.Dense"):
            out["layers"].append({"units": ast.literal_eval(node.args[0]),
                                  **{k: ast.literal_eval(v) for k, v in kwargs.items()}})
        elif name == "model.compile":
            opt = kwargs["optimizer"]
            out["optimizer"] = ast.literal_eval(opt) if isinstance(opt, ast.Constant) else optimizers[opt.id]
            out["loss"] = ast.literal_eval(kwargs["loss"])
        elif name == "model.fit":
            out["fit_args"] = [a.id for a in node.args]
            out["epochs"] = ast.literal_eval(kwargs["epochs"])
    namespace = {"np": np}
    from sklearn.preprocessing import StandardScaler
    namespace["StandardScaler"] = StandardScaler
    exec(compile(ast.Module(body=data_statements, type_ignores=[]), "<data>", "exec"), namespace)  # noqa: S102
    out["namespace"] = namespace
    return out


def test_missing_documents_fail_unless_said_absent_on_purpose(monkeypatch, tmp_path):
    """A checkout without ../shared/seeds fails these tests with one line, never skips silently."""
    import sys
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "SEEDS", tmp_path / "absent")
    monkeypatch.delenv(NO_SEEDS, raising=False)
    with pytest.raises(pytest.fail.Exception, match=f"set {NO_SEEDS}=1 to skip"):
        document_blocks("doc000")
    monkeypatch.setenv(NO_SEEDS, "1")
    with pytest.raises(pytest.skip.Exception, match="absent on purpose"):
        document_blocks("doc000")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.key)
def test_code_is_the_documents_code_verbatim(example):
    blocks = document_blocks(example.doc)
    assert len(blocks) == 3
    assert CODE[(example.doc, example.number)].rstrip() == blocks[example.number - 1].rstrip()
    assert example.code == CODE[(example.doc, example.number)]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.key)
def test_definition_reproduces_the_documents_arrays_layers_and_arguments(example):
    doc = describe(document_blocks(example.doc)[example.number - 1])
    assert list(example.layers) == doc["layers"]
    assert example.optimizer == doc["optimizer"]
    assert example.epochs == doc["epochs"]
    if example.loss != doc["loss"]:  # a change, and then it must be listed
        assert any(f"loss='{doc['loss']}' -> loss='{example.loss}'" in c for c in example.changes)
    X, y = make_data(example.data)
    names = doc["fit_args"]
    if all(n in doc["namespace"] for n in names):
        assert not example.names
        for mine, theirs in zip((X, y), (doc["namespace"][n] for n in names)):
            assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
            assert np.array_equal(mine, theirs)
    else:  # the document never defines them: synthesized, with the stated feature count, and said so
        assert tuple(names) == example.names == ("X_train", "y_train")
        assert all(n not in doc["namespace"] for n in names)
        assert X.shape[1] == doc["layers"][0]["input_shape"][0]
        assert any("never defined in the document" in c for c in example.changes)


def test_unknown_example_data_is_an_error():
    with pytest.raises(ValueError, match="unknown example data 'nope'"):
        make_data("nope")
