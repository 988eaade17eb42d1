"""Structured answers: the `response_format` machinery, and reading JSON out of free text.

Structured output (`LLMRequest.response_format`): `output_spec` turns what the caller gave (a pydantic model class, an
OpenAI-shaped `json_schema` dict, or `{"type": "json_object"}`) into an `OutputSpec`; each adapter sends its vendor's
native form of it (see `llm.backends.sdk.adapter`); `parse_output` validates the answer, and `repair_request` builds the
one follow-up request that sends an invalid answer back with its errors. `strict_schema` makes a schema valid for
OpenAI's strict mode; `schema_problems` says what a vendor cannot take, so it is refused before any request.

Free text: models wrap JSON in prose and Markdown fences, add trailing commas, or send an object where an array was
asked for. These helpers accept all of that and return the documented type; they never raise on a bad reply.

    extract_json('Sure! ```json\n{"a": [1, 2]}\n```')      # {"a": [1, 2]}
    to_string_list({"insights": ["x", {"text": "y"}]})     # ["x", "y"]
    best_category("Category: smart home", ["home", "smart home"])   # "smart home"
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "InvalidOutput",
    "OutputSpec",
    "best_category",
    "extract_json",
    "output_spec",
    "parse_output",
    "repair_request",
    "schema_problems",
    "strict_schema",
    "to_string_list",
]

_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
# Where a JSON object or array can start: "{" before a key or "}", "[" before a value or "]".
_OPENER = re.compile(r'\{(?=\s*["}])|\[(?=\s*[\]\["{\-0-9tfn])')
_BULLET = re.compile(r"^\s*(?:[-*•+]+|\d+[.)])\s+")
_DECODER = json.JSONDecoder()
_MISSING = object()
#: Work allowed for failed decode attempts while scanning prose: FACTOR x the text length + BASE characters.
SCAN_BUDGET_FACTOR = 8
SCAN_BUDGET_BASE = 200_000
RECURSION_COST = 5_000


def extract_json(text: str, expect: type[dict[str, Any]] | type[list[Any]] | None = None) -> Any:
    """The JSON value in a model reply, or None when there is none.

    Tries the whole reply, then fenced blocks (```json ... ```), then values embedded in prose (scanned with
    `json.JSONDecoder.raw_decode`, so nested objects and arrays come out whole; the longest value wins); then the same
    again with trailing commas removed. With `expect`, a value of that type is preferred over other values.
    """
    if not isinstance(text, str):
        return None
    found: list[Any] = []
    for attempt in (text, _TRAILING_COMMA.sub(r"\1", text)):
        found = _json_candidates(attempt)
        if found:
            break
    if expect is not None:
        found = [value for value in found if isinstance(value, expect)] or found
    return found[0] if found else None


def _decode_whole(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _MISSING


def _json_candidates(text: str) -> list[Any]:
    whole = _decode_whole(text.strip())
    if whole is not _MISSING:
        return [whole]
    fenced = [_decode_whole(block.group(1).strip()) for block in _FENCE.finditer(text)]
    fenced = [value for value in fenced if value is not _MISSING]
    return fenced or _embedded_values(text)


def _embedded_values(text: str) -> list[Any]:
    """JSON objects and arrays found in prose, longest first.

    Each `{` or `[` is tried with `raw_decode`; a success skips past the value. Failed attempts are charged the text
    they scanned, and scanning stops when that passes a budget linear in the text, so that pathological replies
    (thousands of unclosed brackets) cost milliseconds instead of seconds.
    """
    embedded: list[tuple[int, Any]] = []
    budget = SCAN_BUDGET_FACTOR * len(text) + SCAN_BUDGET_BASE
    position = 0
    while budget > 0 and (match := _OPENER.search(text, position)) is not None:
        start = match.start()
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            budget -= exc.pos - start + 1
            position = start + 1
            continue
        except RecursionError:
            budget -= RECURSION_COST
            position = start + 1
            continue
        embedded.append((end - start, value))
        position = end
    return [value for _, value in sorted(embedded, key=lambda item: -item[0])]


_LIST_KEYS = ("insights", "key_insights", "items", "results", "findings", "key_findings", "recommendations")
_TEXT_KEYS = ("insight", "text", "description", "summary", "title", "content", "name")


def _item_text(item: Any) -> str:
    if isinstance(item, str):
        return item.strip()
    if isinstance(item, Mapping):
        for key in _TEXT_KEYS:
            value = item.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
        return json.dumps(item, ensure_ascii=False, default=str)
    return "" if item is None else json.dumps(item, ensure_ascii=False, default=str)


def to_string_list(value: Any, fallback_text: str = "") -> list[str]:
    """A list of non-empty strings out of whatever a model sent.

    A list gives its items (objects by their text field); an object gives its first list value (preferring keys such
    as "insights"); a string gives itself. When that yields nothing (or for anything else), the non-empty lines of
    `fallback_text`, bullets removed.
    """
    if isinstance(value, Mapping):
        lists = [value[key] for key in _LIST_KEYS if isinstance(value.get(key), list)]
        lists += [item for item in value.values() if isinstance(item, list)]
        value = lists[0] if lists else [item for item in value.values() if isinstance(item, str)]
    if isinstance(value, str):
        value = [value]
    items = [_item_text(item) for item in value] if isinstance(value, list) else []
    if not any(items):
        lines = (_BULLET.sub("", line).strip() for line in fallback_text.splitlines())
        items = [line for line in lines if not line.startswith("```")]
    return [item for item in items if item]


def _normalise_label(text: str) -> str:
    return re.sub(r"[^\w\s-]", " ", text.casefold()).strip()


def best_category(reply: str, categories: list[str]) -> str:
    """The category a classification reply names.

    An exact answer wins; else the category mentioned first as a whole word or phrase (the longest one when two start
    at the same place, so "smart home" beats "home"); else the closest spelling; else the first category.
    """
    answer = _normalise_label(re.sub(r"^\s*category\s*:", "", reply, flags=re.IGNORECASE))
    labels = {_normalise_label(category): category for category in categories}
    if answer in labels:
        return labels[answer]
    mentions = []
    for label, category in labels.items():
        match = re.search(rf"(?<![\w-]){re.escape(label)}(?![\w-])", answer) if label else None
        if match is not None:
            mentions.append((match.start(), -len(label), category))
    if mentions:
        return min(mentions)[2]
    close = difflib.get_close_matches(answer, list(labels), n=1, cutoff=0.6)
    return labels[close[0]] if close else categories[0]


# -- structured output (`LLMRequest.response_format`) ------------------------------------------------------------------

#: Longest raw answer quoted back to the model in a repair request, and kept on `LLMStructuredOutputError`.
REPAIR_QUOTE_LIMIT = 4000
#: Most validation errors listed in a repair request or an error message.
MAX_LISTED_ERRORS = 8
#: What a vendor cannot take in a schema (`schema_problems(schema, rules)`): "object_root": the top level must be an
#: object; "no_recursion": no `$ref` cycle. Every vendor refuses a `$ref` outside the schema itself.
SCHEMA_RULES = frozenset({"object_root", "no_recursion"})


class InvalidOutput(Exception):
    """An answer that is not valid for the requested format; `errors` says why, one short line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class OutputSpec:
    """What the caller asked for, in one shape.

    Attributes:
        name: the schema's name (the model class's name, or `json_schema.name`); "json_object" for free JSON.
        schema: the JSON schema, or None for `{"type": "json_object"}` (any JSON object).
        model: the pydantic model class the answer is validated into, or None.
        strict: whether the caller asked for strict mode (OpenAI's `strict`; True for a model class).
    """

    __slots__ = ("model", "name", "schema", "strict")

    def __init__(self, name: str, schema: dict[str, Any] | None, model: type[Any] | None, strict: bool) -> None:
        self.name = name
        self.schema = schema
        self.model = model
        self.strict = strict

    def openai_format(self, *, strict: bool = True) -> dict[str, Any]:
        """OpenAI's `response_format`: `json_schema` (made strict-valid when `strict`), or `json_object`."""
        if self.schema is None:
            return {"type": "json_object"}
        schema = strict_schema(self.schema) if strict else self.schema
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": schema, "strict": strict}}


def output_spec(response_format: Any, where: str = "response_format") -> OutputSpec:
    """The `OutputSpec` for a `response_format` value.

    Raises:
        LLMValidationError: for anything but a pydantic model class, an OpenAI-shaped `json_schema` dict whose schema
            is a JSON object, or `{"type": "json_object"}`.
    """
    from llm.errors import LLMValidationError

    if isinstance(response_format, type):
        return _model_spec(response_format, where)
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "json_object":
        return OutputSpec("json_object", None, None, False)
    spec = response_format.get("json_schema") if kind == "json_schema" else None
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    if not isinstance(schema, Mapping):
        raise LLMValidationError(
            f"{where}: expected a pydantic model class, {{'type': 'json_object'}} or {{'type': 'json_schema', "
            f"'json_schema': {{'name': ..., 'schema': {{...}}}}}}, got {type(response_format).__name__}",
            field=where)
    assert isinstance(spec, Mapping)
    name = spec.get("name") or "response"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise LLMValidationError(f"{where}.json_schema.name: 1 to 64 letters, digits, '_' or '-', got {name!r:.40}",
                                 field=f"{where}.json_schema.name")
    return OutputSpec(name, dict(schema), None, spec.get("strict") is not False)


def _model_spec(model: type[Any], where: str) -> OutputSpec:
    from llm.errors import LLMValidationError

    try:
        import pydantic

        if not issubclass(model, pydantic.BaseModel):
            raise TypeError("not a pydantic model")
        schema: dict[str, Any] = model.model_json_schema()
    except Exception as exc:  # pydantic refuses to describe it (an arbitrary type, a forward reference left open)
        raise LLMValidationError(f"{where}: {model.__name__} has no JSON schema ({type(exc).__name__}: {exc})"[:300],
                                 field=where) from None
    name = re.sub(r"[^A-Za-z0-9_-]", "_", model.__name__)[:64] or "response"
    return OutputSpec(name, schema, model, True)


#: String length bounds strict mode does not take: moved into the description (the answer is still validated
#: against them on our side), as `anthropic.transform_schema` does for Claude.
_STRICT_UNSUPPORTED = ("minLength", "maxLength")


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` made valid for OpenAI's strict mode: every object closed (`additionalProperties: false`) with every
    property required, a property that was optional made nullable, `default` dropped (strict mode refuses it) and
    string length bounds moved into the description.

    See https://platform.openai.com/docs/guides/structured-outputs#supported-schemas
    """
    strict: dict[str, Any] = _strict(schema)
    return strict


_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})


def _strict(node: Any, names_map: bool = False) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    if names_map:  # {name: schema}: the names are the caller's, whatever they are
        return {key: _strict(value) for key, value in node.items()}
    dropped = _STRICT_UNSUPPORTED if node.get("type") == "string" else ()  # a string schema, not a `properties` map
    out = {key: _strict(value, key in _SCHEMA_MAPS) for key, value in node.items()
           if key != "default" and key not in dropped}
    bounds = {key: node[key] for key in dropped if key in node}
    if bounds:
        note = ", ".join(f"{key}: {value}" for key, value in bounds.items())
        out["description"] = f"{out['description']} ({note})" if isinstance(out.get("description"), str) else note
    properties = out.get("properties")
    if out.get("type") == "object" or isinstance(properties, Mapping):
        properties = dict(properties) if isinstance(properties, Mapping) else {}
        required = set(node.get("required") or ())
        for key, value in properties.items():
            if key not in required and not _nullable(value):
                properties[key] = {"anyOf": [value, {"type": "null"}]}
        out.update(properties=properties, required=list(properties), additionalProperties=False)
    return out


def _nullable(node: Any) -> bool:
    if not isinstance(node, Mapping):
        return False
    kind = node.get("type")
    return kind == "null" or (isinstance(kind, list) and "null" in kind) or any(
        _nullable(option) for option in node.get("anyOf") or ())


def schema_problems(schema: Mapping[str, Any], rules: frozenset[str] = frozenset()) -> list[str]:
    """What in `schema` a vendor with these `SCHEMA_RULES` cannot take; empty when it can take it all."""
    problems = []
    if "object_root" in rules and schema.get("type") != "object":
        problems.append(f"the top level must be an object (\"type\": \"object\"), not {schema.get('type')!r}")
    refs = list(_refs(schema))
    remote = sorted({ref for ref in refs if not ref.startswith("#")})
    if remote:
        problems.append(f"$ref outside the schema is not fetched: {', '.join(remote)[:200]}")
    if "no_recursion" in rules and _recursive(schema):
        problems.append("recursive schemas (a $ref cycle) are not supported")
    return problems


def _refs(node: Any) -> Any:
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _recursive(schema: Mapping[str, Any]) -> bool:
    """Whether a local `$ref` leads back to where it started: `#` itself, or a cycle among the definitions."""
    if any(ref == "#" for ref in _refs(schema)):
        return True
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), Mapping):
            defs.update({f"#/{key}/{name}": value for name, value in schema[key].items()})
    edges = {name: {ref for ref in _refs(body) if ref in defs} for name, body in defs.items()}
    done: set[str] = set()
    for root in edges:  # iterative depth-first search; a node met again on the current path closes a cycle
        path: list[tuple[str, list[str]]] = [(root, sorted(edges[root]))]
        on_path = {root}
        while path:
            node, pending = path[-1]
            if not pending:
                path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            nxt = pending.pop()
            if nxt in on_path:
                return True
            if nxt not in done:
                path.append((nxt, sorted(edges[nxt])))
                on_path.add(nxt)
    return False


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
