"""What a caller asks of structured output (`LLMRequest.response_format`): `output_spec` turns a pydantic model class,
an OpenAI-shaped `json_schema` dict or `{"type": "json_object"}` into one `OutputSpec`; `strict_schema` makes a schema
valid for OpenAI's strict mode; `schema_problems` says what a vendor cannot take, so it is refused before any request
(README "Structured output")."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from llm.output.validate import nullable, pattern_problems

__all__ = ["SCHEMA_RULES", "OutputSpec", "output_spec", "schema_problems", "strict_schema"]

#: What a vendor cannot take in a schema (`schema_problems(schema, rules)`): "object_root": the top level must be an
#: object; "no_recursion": no `$ref` cycle. Every vendor refuses a `$ref` outside the schema itself.
SCHEMA_RULES = frozenset({"object_root", "no_recursion"})


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
            is a JSON object, or `{"type": "json_object"}`; for a schema whose `pattern` the answer cannot be checked
            against in linear time (`llm.output.validate`).
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
    problems = pattern_problems(schema)  # a model class's patterns are pydantic's, checked by its own engine
    if problems:
        raise LLMValidationError(f"{where}.json_schema.schema: {'; '.join(problems[:3])}"[:500],
                                 field=f"{where}.json_schema.schema")
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
            if key not in required and not nullable(value):
                properties[key] = {"anyOf": [value, {"type": "null"}]}
        out.update(properties=properties, required=list(properties), additionalProperties=False)
    return out


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
