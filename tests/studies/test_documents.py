"""nanbench.studies.documents, and the example definitions, against the documents themselves.

The documents are parsed from the Markdown beside the repository (../shared/seeds). A checkout
without them runs the same tests on the code blocks nanbench keeps (documents.CODE), once their
SHA-256 is checked against the documents' own (recorded below from ../shared/seeds): the tests
never skip, and a document that changes fails them where it is present.
"""

from __future__ import annotations

import ast
import hashlib
import re

import numpy as np
import pytest

from nanbench.config import ROOT
from nanbench.studies.documents import CODE, make_data
from nanbench.studies.examples.definitions import EXAMPLES

SEEDS = ROOT.parent / "shared" / "seeds"
DOCS = {"doc000": "doc000-*.md", "doc003": "doc003-*.md"}
# SHA-256 of each document's python blocks (rstripped, joined by NUL), from ../shared/seeds
DIGESTS = {"doc000": "aea8316a0d243451e629129d762fdaa9b604ffe3d16fb85c3331a89afc297fc2",
           "doc003": "eb7245d6112a4457e71127c41d86fcb0ac6d4ceabf7d3f3a3c1fa94ac69778a7"}


def digest(blocks: list[str]) -> str:
    return hashlib.sha256("\0".join(b.rstrip() for b in blocks).encode()).hexdigest()


def document_blocks(doc: str) -> list[str]:
    """The python code blocks of a document, in order (example i is block i): read from the
    document when it is there, else nanbench's copies, which must hash as the document's."""
    path = next(SEEDS.glob(DOCS[doc]), None) if SEEDS.is_dir() else None
    if path is not None:
        blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    else:
        blocks = [CODE[(doc, i)] for i in range(1, 1 + sum(1 for key in CODE if key[0] == doc))]
    assert digest(blocks) == DIGESTS[doc], f"{doc}'s code blocks are not the ones these tests were written for"
    return blocks


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


def test_without_the_documents_the_kept_copies_stand_in_only_if_they_hash_as_the_documents(monkeypatch, tmp_path):
    import sys
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "SEEDS", tmp_path / "absent")
    assert [b.rstrip() for b in document_blocks("doc000")] == [CODE[("doc000", i)].rstrip() for i in (1, 2, 3)]
    monkeypatch.setitem(module.DIGESTS, "doc003", "0" * 64)  # a copy that drifted from its document
    with pytest.raises(AssertionError, match="not the ones these tests were written for"):
        document_blocks("doc003")


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
