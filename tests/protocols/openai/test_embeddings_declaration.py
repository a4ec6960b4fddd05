"""The EMBEDDINGS declaration: checked against the handler's schemas when handlers load."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.protocols import reserved_names
from serving.runtime.handlers import HandlerError, discover_handlers

_INPUT = '{"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}'
_VECTOR = '{"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3}'
_OUTPUT = '{"type": "object", "properties": {"embedding": ' + _VECTOR + "}}"
_COUNT = "def count_tokens(model, texts):\n    return [len(t.split()) for t in texts]\n"


def _handler(
    directory: Path, *, declaration: str, input_schema: str = _INPUT, output_schema: str = _OUTPUT, count: str = _COUNT
) -> Path:
    (directory / "embedder.py").write_text(
        f"INPUT_SCHEMA = {input_schema}\nOUTPUT_SCHEMA = {output_schema}\nEMBEDDINGS = {declaration}\n"
        f"def predict(model, payload):\n    return {{'embedding': [1.0, 0.0, 0.0]}}\n{count}"
    )
    return directory


def test_a_declared_embedding_model_knows_its_properties_and_dimension(tmp_path: Path) -> None:
    (spec,) = discover_handlers(_handler(tmp_path, declaration='{"input": "text", "output": "embedding"}'))

    assert spec.embeddings is not None
    assert (spec.embeddings.input, spec.embeddings.output, spec.embeddings.dimensions) == ("text", "embedding", 3)
    assert spec.embeddings.count_tokens(None, ["a b", "c"]) == [2, 1]


def test_a_handler_without_the_declaration_is_no_embedding_model(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("INPUT_SCHEMA = {}\ndef predict(model, payload):\n    return 1\n")

    (spec,) = discover_handlers(tmp_path)

    assert spec.embeddings is None


@pytest.mark.parametrize(
    ("declaration", "changes", "expected", "found"),
    [
        pytest.param("['text']", {}, "EMBEDDINGS to be {", "['text']", id="not-a-dict"),
        pytest.param('{"input": "text"}', {}, "EMBEDDINGS to be {", "{'input': 'text'}", id="missing-output"),
        pytest.param(
            '{"input": "words", "output": "embedding"}', {}, "a string property 'words'", "no such property", id="input"
        ),
        pytest.param(
            '{"input": "text", "output": "embedding"}',
            {
                "input_schema": '{"type": "object", "properties": {"text": {"type": "string"}, "n": {}}, '
                '"required": ["text", "n"]}'
            },
            "no required input property besides 'text'",
            "['n']",
            id="other-required-input",
        ),
        pytest.param(
            '{"input": "text", "output": "vector"}', {}, "array-of-numbers property 'vector'", "no such", id="output"
        ),
        pytest.param(
            '{"input": "text", "output": "embedding"}',
            {"output_schema": '{"type": "string"}'},
            "OUTPUT_SCHEMA to be an object",
            "no such property",
            id="output-not-object",
        ),
        pytest.param(
            '{"input": "text", "output": "embedding"}',
            {"count": ""},
            "count_tokens(model, texts)",
            "none",
            id="no-count",
        ),
        pytest.param(
            '{"input": "text", "output": "embedding"}',
            {"count": "def count_tokens(texts):\n    return []\n"},
            "`count_tokens` taking 2 positional arguments",
            "1",
            id="count-arity",
        ),
    ],
)
def test_a_bad_declaration_is_rejected_naming_the_file(
    tmp_path: Path, declaration: str, changes: dict[str, str], expected: str, found: str
) -> None:
    with pytest.raises(HandlerError) as info:
        discover_handlers(_handler(tmp_path, declaration=declaration, **changes))

    message = str(info.value)
    assert str(tmp_path / "embedder.py") in message
    assert expected in message
    assert found in message.split(", found ", 1)[1]


def test_no_model_may_be_called_embeddings(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text(
        "NAME = 'Embeddings'\nINPUT_SCHEMA = {}\ndef predict(model, payload):\n    return 1\n"
    )

    with pytest.raises(HandlerError, match=r"a NAME other than .*embeddings"):
        discover_handlers(tmp_path, reserved_names=reserved_names())
