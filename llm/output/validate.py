"""Checking a structured answer against a JSON schema in time linear in the answer: `validate_schema` (jsonschema,
with the keywords that run regular expressions or compare items pairwise replaced), `pattern_problems` (the patterns
that the linear engine cannot take, refused before any request) and `without_nulls` (the nulls `strict_schema` made
valid, read as "absent").

Patterns run on the Rust `regex` engine of pydantic-core, which never backtracks: a schema's `^(a+)+$` costs
microseconds, not seconds of event-loop time, whatever the answer holds. That engine takes no look-around and no
backreference (https://docs.rs/regex/latest/regex/#syntax), so a schema using them is refused up front rather than
checked by a backtracking engine. Property names are matched the same way (`patternProperties`,
`additionalProperties`), and `uniqueItems` hashes canonical items instead of jsonschema's pairwise comparison.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["nullable", "pattern_problems", "validate_schema", "without_nulls"]

#: Most `$ref` hops followed in a row while reading a schema (a `$ref` chain longer than this is left unresolved).
MAX_REF_HOPS = 32


@functools.lru_cache(maxsize=256)
def _matcher(pattern: str) -> Any:
    """A validator that accepts the strings `pattern` matches (searched, unanchored, as JSON Schema says); raises
    `pydantic_core.SchemaError` for a pattern the linear engine cannot take."""
    from pydantic_core import SchemaValidator, core_schema

    return SchemaValidator(core_schema.str_schema(pattern=pattern, regex_engine="rust-regex"))


def _matches(pattern: str, text: str) -> bool:
    import pydantic_core

    try:
        _matcher(pattern).validate_python(text)
    except pydantic_core.ValidationError:
        return False
    return True


def pattern_problems(schema: Any) -> list[str]:
    """The patterns in `schema` (`pattern`, `patternProperties`) the linear engine cannot take, one line each."""
    import pydantic_core

    problems = []
    for pattern in sorted(set(_patterns(schema))):
        try:
            _matcher(pattern)
        except pydantic_core.SchemaError as exc:
            why = str(exc).strip().splitlines()[-1].removeprefix("error: ")
            problems.append(f"pattern {pattern!r:.80} cannot be checked in linear time ({why[:120]})")
    return problems


def _patterns(node: Any, names_map: bool = False) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _patterns(item)
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if names_map:  # {name: schema}: the names are the caller's
                yield from _patterns(value)
                continue
            if key == "pattern" and isinstance(value, str):
                yield value
            elif key == "patternProperties" and isinstance(value, Mapping):
                yield from (name for name in value if isinstance(name, str))
            yield from _patterns(value, key in ("properties", "$defs", "definitions", "patternProperties"))


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema import ValidationError

    if isinstance(instance, str) and isinstance(pattern, str) and not _matches(pattern, instance):
        yield ValidationError(f"{instance[:80]!r} does not match {pattern!r:.80}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not isinstance(instance, dict):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _matches(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, extra_schema: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema import ValidationError

    if not isinstance(instance, dict):
        return
    properties, patterns = schema.get("properties") or {}, list(schema.get("patternProperties") or ())
    extras = [key for key in instance
              if key not in properties and not any(_matches(pattern, key) for pattern in patterns)]
    if isinstance(extra_schema, Mapping):
        for key in extras:
            yield from validator.descend(instance[key], extra_schema, path=key)
    elif extra_schema is False and extras:
        yield ValidationError(f"additional properties are not allowed ({', '.join(map(repr, extras[:8]))[:200]})")


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema import ValidationError

    if unique is True and isinstance(instance, list):
        seen = {_canonical(item) for item in instance}
        if len(seen) < len(instance):
            yield ValidationError("the array has non-unique elements")


def _canonical(value: Any) -> Any:
    """A hashable form of a JSON value, equal for values JSON Schema calls equal (1 == 1.0, true != 1)."""
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return ("object", frozenset((key, _canonical(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("array", tuple(_canonical(item) for item in value))
    return value


@functools.cache
def _validator_class() -> Any:
    import jsonschema

    return jsonschema.validators.extend(jsonschema.Draft202012Validator, {
        "pattern": _pattern, "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties, "uniqueItems": _unique_items})


def validate_schema(schema: Mapping[str, Any], value: Any) -> list[str]:
    """What is wrong with `value` for `schema`, one short line per problem; empty when valid.

    Raises:
        ValueError: the schema cannot be applied (its own error, or too deep to follow).
    """
    import jsonschema

    try:
        validator = _validator_class()(schema)
        problems = sorted(validator.iter_errors(value), key=lambda error: list(map(str, error.absolute_path)))
    except (jsonschema.SchemaError, jsonschema.exceptions.RefResolutionError, RecursionError) as exc:
        raise ValueError(f"the schema cannot be applied: {str(exc).splitlines()[0][:200]}") from None
    return [f"{'.'.join(map(str, error.absolute_path)) or '(root)'}: {error.message[:200]}" for error in problems]


def without_nulls(root: Mapping[str, Any], value: Any) -> Any:
    """`value` without the nulls the strict schema allowed: a null sent for a property `root` has as optional and not
    nullable means "absent" (so that a model class's default applies), at every depth.

    `strict_schema` makes every optional property nullable, at every depth; the answer is then checked against the
    caller's own schema, which does not take those nulls.
    """
    return _without_nulls(root, root, value)


def _without_nulls(root: Mapping[str, Any], node: Any, value: Any) -> Any:
    if not isinstance(value, dict | list):
        return value
    node = _resolved(root, node)
    if not isinstance(node, Mapping):
        return value
    for option in node.get("allOf") or ():
        value = _without_nulls(root, option, value)
    options = [option for option in node.get("anyOf") or node.get("oneOf") or () if _fits(root, option, value)]
    if options:
        value = _without_nulls(root, options[0], value)
    if isinstance(value, dict) and isinstance(node.get("properties"), Mapping):
        properties, required = node["properties"], set(node.get("required") or ())
        value = {key: _without_nulls(root, properties[key], item) if key in properties else item
                 for key, item in value.items()
                 if item is not None or key in required or key not in properties
                 or nullable(_resolved(root, properties[key]))}
    elif isinstance(value, list) and isinstance(node.get("items"), Mapping):
        value = [_without_nulls(root, node["items"], item) for item in value]
    return value


def _fits(root: Mapping[str, Any], option: Any, value: Any) -> bool:
    """Whether an `anyOf` option is one for values of this JSON type (an object or an array)."""
    option = _resolved(root, option)
    if not isinstance(option, Mapping):
        return False
    if isinstance(value, dict):
        return option.get("type") == "object" or "properties" in option
    return option.get("type") == "array" or "items" in option


def nullable(node: Any) -> bool:
    """Whether a schema takes null (`"type": "null"`, a type list with "null", or an `anyOf` option that does)."""
    if not isinstance(node, Mapping):
        return False
    kind = node.get("type")
    return kind == "null" or (isinstance(kind, list) and "null" in kind) or any(
        nullable(option) for option in node.get("anyOf") or ())


def _resolved(root: Mapping[str, Any], node: Any) -> Any:
    """`node` with a local `$ref` ("#/$defs/Item", any JSON pointer into `root`) followed; as it is otherwise."""
    for _ in range(MAX_REF_HOPS):
        ref = node.get("$ref") if isinstance(node, Mapping) else None
        if not isinstance(ref, str) or not ref.startswith("#"):
            return node
        target: Any = root
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, Mapping) else None
        node = target
    return node
