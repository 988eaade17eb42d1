"""Reading a structured answer: `parse_output` validates it against its `OutputSpec`, and `repair_request` builds the
one follow-up request that sends an invalid answer back with its errors (README "Structured output")."""

from __future__ import annotations

import json
from typing import Any

from llm.output.lenient import extract_json
from llm.output.spec import OutputSpec
from llm.output.validate import validate_schema, without_nulls

__all__ = ["MAX_ANSWER_CHARS", "MAX_LISTED_ERRORS", "REPAIR_QUOTE_LIMIT", "InvalidOutput", "parse_output",
           "repair_request"]

#: The longest structured answer read, in characters (checked before parsing). Above what any vendor's output cap
#: allows (128k tokens at about 4 characters a token is about 0.5 M), so only a runaway or hostile answer meets it.
MAX_ANSWER_CHARS = 1 << 20

#: Longest raw answer quoted back to the model in a repair request, and kept on `LLMStructuredOutputError`.
REPAIR_QUOTE_LIMIT = 4000
#: Most validation errors listed in a repair request or an error message.
MAX_LISTED_ERRORS = 8


class InvalidOutput(Exception):
    """An answer that is not valid for the requested format; `errors` says why, one short line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def parse_output(spec: OutputSpec, text: str, *, lenient: bool = False) -> Any:
    """The answer `text` read and validated as `spec` asks: the model instance, or the JSON value.

    An answer to a natively requested format is the whole text read as JSON (whitespace aside): a JSON value found
    inside other text is not that answer. `lenient=True` is for free text (a backend without a native mode): the
    JSON object inside Markdown fences or prose is taken then (`extract_json`). An answer longer than
    `MAX_ANSWER_CHARS` is refused before it is read, so that reading and validating stay bounded in time and memory.
    Under a strict schema, a null sent for an optional field is read as the field left out, at every depth
    (`llm.output.validate.without_nulls`), so that the model class's own default applies.

    Raises:
        InvalidOutput: the text is too long, holds no JSON object, or does not validate; never a JSON or pydantic
            exception.
    """
    if not isinstance(text, str):
        raise InvalidOutput([f"the answer is not text but {type(text).__name__}"])
    if len(text) > MAX_ANSWER_CHARS:
        raise InvalidOutput([f"the answer is {len(text):,} characters, over the {MAX_ANSWER_CHARS:,} a structured "
                             "answer may have (llm.output.parse.MAX_ANSWER_CHARS)"])
    value = _decoded(text, lenient)
    try:
        if spec.strict and spec.schema is not None:
            value = without_nulls(spec.schema, value)
        if spec.model is not None:
            return _validate_model(spec.model, value)
        if spec.schema is None:
            if not isinstance(value, dict):
                raise InvalidOutput([f"expected a JSON object, got {type(value).__name__}"])
            return value
        problems = validate_schema(spec.schema, value)
    except RecursionError:
        raise InvalidOutput(["the answer is nested too deeply to validate"]) from None
    except ValueError as exc:  # `validate_schema`: the schema cannot be applied
        raise InvalidOutput([str(exc)]) from None
    if problems:
        raise InvalidOutput(problems[:MAX_LISTED_ERRORS])
    return value


def _decoded(text: str, lenient: bool) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        error = str(exc)[:200] or type(exc).__name__
    if lenient:
        value = extract_json(text, expect=dict)
        if value is not None:
            return value
    raise InvalidOutput([f"the answer is not JSON: {error}"])


def _validate_model(model: type[Any], value: Any) -> Any:
    import pydantic

    try:
        return model.model_validate(value)
    except pydantic.ValidationError as exc:
        raise InvalidOutput([
            f"{'.'.join(map(str, error['loc'])) or '(root)'}: {error['msg']}"
            for error in exc.errors(include_url=False)[:MAX_LISTED_ERRORS]
        ]) from None


def repair_request(request: Any, spec: OutputSpec, answer: str, errors: list[str]) -> Any:
    """The one follow-up request after an invalid answer: the conversation, the model's answer, and a user message
    listing what was wrong and asking for the corrected JSON only."""
    import dataclasses

    listed = "\n".join(f"- {error}" for error in errors[:MAX_LISTED_ERRORS])
    shape = "the JSON schema you were given" if spec.schema is not None else "a single JSON object"
    fix = (f"Your answer was not valid JSON for {shape}. Problems:\n{listed}\n"
           "Reply again with only the corrected JSON, no other text.")
    messages = [*request.messages, {"role": "assistant", "content": answer[:REPAIR_QUOTE_LIMIT] or "(empty)"},
                {"role": "user", "content": fix}]
    return dataclasses.replace(request, messages=messages)
