"""Reading a structured answer: `parse_output` validates it against its `OutputSpec`, and `repair_request` builds the
one follow-up request that sends an invalid answer back with its errors (README "Structured output")."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llm.output.lenient import _MISSING, _decode_whole, extract_json
from llm.output.spec import OutputSpec

__all__ = ["MAX_LISTED_ERRORS", "REPAIR_QUOTE_LIMIT", "InvalidOutput", "parse_output", "repair_request"]

#: Longest raw answer quoted back to the model in a repair request, and kept on `LLMStructuredOutputError`.
REPAIR_QUOTE_LIMIT = 4000
#: Most validation errors listed in a repair request or an error message.
MAX_LISTED_ERRORS = 8


class InvalidOutput(Exception):
    """An answer that is not valid for the requested format; `errors` says why, one short line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def parse_output(spec: OutputSpec, text: str) -> Any:
    """The answer `text` read and validated as `spec` asks: the model instance, or the JSON value.

    The text is read as JSON whole; failing that, the JSON object inside Markdown fences or prose is taken (models
    without a native mode wrap it). A field the strict schema made nullable and the model sent as null is dropped
    before validation, so that the model class's own default applies.

    Raises:
        InvalidOutput: the text holds no JSON object, or it does not validate; never a JSON or pydantic exception.
    """
    value = _decode_whole(text.strip()) if isinstance(text, str) else _MISSING
    if value is _MISSING:
        value = extract_json(text, expect=dict)
        if value is None:
            raise InvalidOutput([f"the answer is not JSON: {_json_error(text)}"])
    if spec.model is not None:
        return _validate_model(spec.model, value)
    if spec.schema is None:
        if not isinstance(value, dict):
            raise InvalidOutput([f"expected a JSON object, got {type(value).__name__}"])
        return value
    _validate_schema(spec.schema, value)
    return value


def _json_error(text: Any) -> str:
    try:
        json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        return str(exc)[:200]
    return "no object found"


def _validate_model(model: type[Any], value: Any) -> Any:
    import pydantic

    if isinstance(value, dict):
        required = {name for name, info in model.model_fields.items() if info.is_required()}
        value = {key: item for key, item in value.items() if item is not None or key in required}
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as exc:
        raise InvalidOutput([
            f"{'.'.join(map(str, error['loc'])) or '(root)'}: {error['msg']}"
            for error in exc.errors(include_url=False)[:MAX_LISTED_ERRORS]
        ]) from None


def _validate_schema(schema: Mapping[str, Any], value: Any) -> None:
    import jsonschema

    try:
        validator = jsonschema.Draft202012Validator(schema)
        problems = sorted(validator.iter_errors(value), key=lambda error: list(error.absolute_path))
    except (jsonschema.SchemaError, jsonschema.exceptions.RefResolutionError, RecursionError) as exc:
        raise InvalidOutput([f"the schema cannot be applied: {str(exc).splitlines()[0][:200]}"]) from None
    if problems:
        raise InvalidOutput([
            f"{'.'.join(map(str, error.absolute_path)) or '(root)'}: {error.message[:200]}"
            for error in problems[:MAX_LISTED_ERRORS]
        ])


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
