"""Request validation: one pass over an `LLMRequest` before any network call, so that a bad request raises
`LLMValidationError` (README.md, "Errors"), sends nothing and never counts against a backend's health.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from llm.core.bounds import MAX_INT32
from llm.errors import LLMValidationError

if TYPE_CHECKING:
    from llm.base import LLMRequest

__all__ = [
    "CONTENT_PART_TYPES",
    "EXTRA_PARAM_KEYS",
    "MAX_JSON_DEPTH",
    "ROLES",
    "SAMPLING_PARAMS",
    "TOOL_CHOICES",
    "validate_request",
]

ROLES = frozenset({"system", "user", "assistant", "tool"})
CONTENT_PART_TYPES = frozenset({"text", "image_url"})
SAMPLING_PARAMS = frozenset(
    {"top_p", "top_k", "stop", "seed", "frequency_penalty", "presence_penalty", "response_format", "user"}
)
EXTRA_PARAM_KEYS = SAMPLING_PARAMS | {"model_name_override"}
TOOL_CHOICES = frozenset({"auto", "none", "required", "any"})
RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})
#: Deepest nesting of a JSON value we pass on: JSON schemas and tool arguments nest a few levels; encoders (json,
#: pydantic, the SDKs') recurse and fail somewhere near 1,000.
MAX_JSON_DEPTH = 64
#: Largest integer magnitude in a JSON value (bits): beyond 64 bits no vendor reads it as a number, and Python refuses
#: to print integers of more than 4,300 digits.
MAX_INT_BITS = 64


def _fail(message: str, field_name: str) -> LLMValidationError:
    return LLMValidationError(f"{field_name}: {message}", field=field_name)


def validate_request(request: LLMRequest, temperature_range: tuple[float, float] = (0.0, 2.0)) -> None:
    """Check a request before any network call. Total: whatever the caller put in a request (a list where a dict
    belongs, an unhashable role, a 100k-deep JSON value, a 5,000-digit number, a lone surrogate), it returns or
    raises `LLMValidationError`. It accepts the OpenAI chat format every adapter translates from:

    * `messages`: a non-empty list of dicts; `role` one of `ROLES`; `content` a string, a list of text / image_url
      parts, or None on assistant and tool messages; `name` a string; a tool result's `tool_call_id` a string; an
      assistant's `tool_calls` a list of `{"id": str, "function": {"name": str, "arguments": JSON-object text or
      dict}}`.
    * `tools`: a list of `{"type": "function", "function": {"name": str, "parameters": dict, ...}}`; `tool_choice`
      one of `TOOL_CHOICES` or `{"type": "function", "function": {"name": str}}`.
    * `extra_params`: only the keys in `EXTRA_PARAM_KEYS`, each of the type its vendors document.
    * `response_format`: a pydantic model class, `{"type": "json_object"}` or an OpenAI-shaped `json_schema` dict
      holding a valid JSON schema (`llm.output.spec.output_spec`); not together with
      `extra_params["response_format"]`.
    * Every JSON value (tool arguments, tool schemas, `response_format`) nests at most `MAX_JSON_DEPTH` deep, holds
      finite numbers of at most `MAX_INT_BITS` bits, and string keys.

    Raises:
        LLMValidationError: naming the first offending field; never any other exception.
    """
    try:
        _validate(request, temperature_range)
    except LLMValidationError:
        raise
    except Exception as exc:  # a shape nobody foresaw (a Mapping whose .get raises, ...): still the caller's input
        raise _fail(f"cannot be read ({type(exc).__name__})", "request") from None


def _validate(request: Any, temperature_range: tuple[float, float]) -> None:
    messages = getattr(request, "messages", None)
    if not isinstance(messages, list) or not messages:
        raise _fail("must be a non-empty list of message dicts", "messages")
    for i, message in enumerate(messages):
        if not _plain_message(message):
            _check_message(i, message)
    system_prompt = getattr(request, "system_prompt", None)
    if system_prompt is not None:
        _check_string(system_prompt, "system_prompt")
    if request.temperature is not None:
        _check_number(request.temperature, "temperature", *temperature_range)
    if request.max_tokens is not None:
        _check_int(request.max_tokens, "max_tokens", 1, MAX_INT32)
    if request.tools is not None or request.tool_choice is not None:
        _check_tools(request.tools, request.tool_choice)
    extra = request.extra_params
    if type(extra) is not dict or extra:  # no extras at all (the common case) needs no check
        _check_extra_params(extra, "extra_params")
    response_format = getattr(request, "response_format", None)
    if response_format is not None:
        _check_output_format(response_format, request.extra_params)


# -- messages ---------------------------------------------------------------------------------------------------------


def _check_text(value: str, field_name: str) -> None:
    # Lone surrogates are what invalid UTF-8 becomes after a lenient decode; no vendor accepts them.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail("contains invalid UTF-8 (lone surrogate code points)", field_name) from None


def _check_string(value: Any, field_name: str, *, non_empty: bool = False) -> None:
    if not isinstance(value, str) or (non_empty and not value):
        raise _fail(f"must be a {'non-empty ' if non_empty else ''}string, got {type(value).__name__}", field_name)
    _check_text(value, field_name)


def _check_content(content: Any, role: str, where: str) -> None:
    if isinstance(content, str):
        _check_text(content, where)
        if role == "tool":
            _check_json_text(content, where)
        return
    if content is None and role in ("assistant", "tool"):
        return
    if not isinstance(content, list):
        raise _fail(f"content must be a string or a list of content parts, got {type(content).__name__}", where)
    for j, part in enumerate(content):
        part_where = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if not isinstance(kind, str) or kind not in CONTENT_PART_TYPES:
            raise _fail(f"content part must be a dict with type in {sorted(CONTENT_PART_TYPES)}", part_where)
        if kind == "text":
            _check_string(part.get("text"), f"{part_where}.text")
            if role == "tool":
                _check_json_text(part["text"], f"{part_where}.text")
            continue
        image = part.get("image_url")
        if not isinstance(image, Mapping) or not isinstance(image.get("url"), str):
            raise _fail("image_url part needs {'image_url': {'url': str}}", part_where)
        _check_text(image["url"], f"{part_where}.image_url.url")


#: The roles whose plain text message `_plain_message` accepts at a glance (a tool result's text may be JSON to check).
_PLAIN_ROLES = frozenset({"system", "user", "assistant"})


def _plain_message(message: Any) -> bool:
    """The common shape, checked cheaply: a plain dict of exactly `role` (not "tool") and ASCII string `content`.
    Anything else (or False here) goes through `_check_message`, which gives the same verdict on this shape."""
    if type(message) is not dict or len(message) != 2:
        return False
    content, role = message.get("content"), message.get("role")
    return type(content) is str and content.isascii() and type(role) is str and role in _PLAIN_ROLES


def _check_message(i: int, message: Any) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, Mapping):
        raise _fail(f"must be a dict, got {type(message).__name__}", where)
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise _fail(f"unknown role {role!r}; expected one of {sorted(ROLES)}", f"{where}.role")
    tool_calls = message.get("tool_calls")
    if "content" not in message and not tool_calls:
        raise _fail("missing 'content'", f"{where}.content")
    _check_content(message.get("content"), role, f"{where}.content")
    if message.get("name") is not None:
        _check_string(message["name"], f"{where}.name", non_empty=True)
    if role == "tool":
        _check_string(message.get("tool_call_id"), f"{where}.tool_call_id")
    if tool_calls is None:
        return
    if not isinstance(tool_calls, list):
        raise _fail(f"must be a list, got {type(tool_calls).__name__}", f"{where}.tool_calls")
    for j, call in enumerate(tool_calls):
        _check_tool_call(call, f"{where}.tool_calls[{j}]")


def _check_tool_call(call: Any, where: str) -> None:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping):
        raise _fail("needs {'id', 'function': {'name', 'arguments'}}", where)
    _check_string(call.get("id"), f"{where}.id")
    _check_string(function.get("name"), f"{where}.function.name", non_empty=True)
    arguments = function.get("arguments")
    if arguments is None:
        return
    if isinstance(arguments, str):
        _check_text(arguments, f"{where}.function.arguments")
        _check_json_text(arguments, f"{where}.function.arguments")
    elif isinstance(arguments, Mapping):
        _check_json(arguments, f"{where}.function.arguments")
    else:
        raise _fail(f"must be JSON object text or a dict, got {type(arguments).__name__}",
                    f"{where}.function.arguments")


# -- JSON values ------------------------------------------------------------------------------------------------------


def _check_json_text(text: str, where: str) -> None:
    """Text an adapter may parse as JSON (tool arguments, tool results): if it is JSON, it must be JSON we can
    carry. Text that is not JSON at all is fine (it goes on as text)."""
    if not text or text.lstrip()[:1] not in ("{", "["):
        return
    import json  # here: json is a fifth of `import llm`, and only tool messages need it

    try:
        value = json.loads(text)
    except RecursionError:
        raise _fail(f"JSON nests deeper than {MAX_JSON_DEPTH} levels", where) from None
    except json.JSONDecodeError:  # not JSON: passed on as text
        return
    except ValueError as exc:  # JSON that cannot be read, e.g. an integer of more than 4,300 digits
        raise _fail(f"holds JSON that cannot be read ({str(exc)[:80]})", where) from None
    _check_json(value, where)


def _check_json(value: Any, where: str) -> None:
    try:
        _walk_json(value, where)
    except LLMValidationError as exc:
        raise _fail(f"cannot be sent as JSON: {str(exc).removeprefix(where + ': ')}", where) from None


def _walk_json(value: Any, where: str) -> None:
    """A JSON value: dicts with string keys, lists, strings, finite numbers, bools, None; at most `MAX_JSON_DEPTH`
    deep. Walked with an explicit stack, so no depth (or cycle) can exhaust ours."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth > MAX_JSON_DEPTH:
                raise _fail(f"nests deeper than {MAX_JSON_DEPTH} levels", where)
            if isinstance(item, Mapping):
                for key in item:
                    if not isinstance(key, str):
                        raise _fail(f"object keys must be strings, got {type(key).__name__}", where)
                    _check_text(key, where)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        else:
            _check_json_scalar(item, where)


def _check_json_scalar(item: Any, where: str) -> None:
    if isinstance(item, str):
        _check_text(item, where)
    elif isinstance(item, bool) or item is None:
        return
    elif isinstance(item, int):
        if item.bit_length() > MAX_INT_BITS:
            raise _fail(f"holds an integer of more than {MAX_INT_BITS} bits", where)
    elif isinstance(item, float):
        if not math.isfinite(item):
            raise _fail("holds a non-finite number (not valid JSON)", where)
    else:
        raise _fail(f"holds a {type(item).__name__}, which is not a JSON value", where)


# -- tools ------------------------------------------------------------------------------------------------------------


def _check_tools(tools: Any, tool_choice: Any) -> None:
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise _fail("must be a list of OpenAI-format function tools", "tools")
        for i, tool in enumerate(tools):
            names.add(_check_tool(tool, f"tools[{i}]"))
    if tool_choice is None:
        return
    if isinstance(tool_choice, str):
        if tool_choice not in TOOL_CHOICES:
            raise _fail(f"must be one of {sorted(TOOL_CHOICES)} or a function choice dict", "tool_choice")
    else:
        function = tool_choice.get("function") if isinstance(tool_choice, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str):
            raise _fail("a dict tool_choice must be {'type': 'function', 'function': {'name': ...}}", "tool_choice")
        if tools and name not in names:
            raise _fail(f"no tool named {name!r} in tools", "tool_choice")
    if not tools and tool_choice not in ("none", "auto"):
        raise _fail("is set but no tools were given", "tool_choice")


def _check_tool(tool: Any, where: str) -> str:
    if not isinstance(tool, Mapping):
        raise _fail(f"must be {{'type': 'function', 'function': {{...}}}}, got {type(tool).__name__}", where)
    function = tool.get("function")
    if tool.get("type", "function") != "function" or not isinstance(function, Mapping):
        raise _fail("must be {'type': 'function', 'function': {...}}", where)
    name = function.get("name")
    _check_string(name, f"{where}.function.name", non_empty=True)
    if function.get("description") is not None:
        _check_string(function["description"], f"{where}.function.description")
    parameters = function.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, Mapping):
            raise _fail(f"must be a JSON schema dict, got {type(parameters).__name__}", f"{where}.function.parameters")
        _check_json(parameters, f"{where}.function.parameters")
    return str(name)


# -- numbers and extra_params -----------------------------------------------------------------------------------------


def _check_number(value: Any, field_name: str, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _fail(f"must be a number in [{low:g}, {high:g}], got {value!r:.40}", field_name)


def _check_int(value: Any, field_name: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shown = f"{value!r:.40}" if not isinstance(value, int) or value.bit_length() < 128 else "a huge integer"
        raise _fail(f"must be an integer in [{low}, {high}], got {shown}", field_name)


def _check_stop(value: Any, where: str) -> None:
    sequences = [value] if isinstance(value, str) else value
    if not isinstance(sequences, list) or not sequences:
        raise _fail("must be a string or a non-empty list of strings", where)
    for sequence in sequences:
        _check_string(sequence, where, non_empty=True)


def _check_response_format(value: Any, where: str) -> None:
    kind = value.get("type") if isinstance(value, Mapping) else None
    if not isinstance(kind, str) or kind not in RESPONSE_FORMATS:
        raise _fail(f"must be a dict with type in {sorted(RESPONSE_FORMATS)}", where)
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema", {}), Mapping):
            raise _fail("needs {'json_schema': {'name': ..., 'schema': {...}}}", f"{where}.json_schema")
    _check_json(value, where)


def _check_output_format(value: Any, extra: Mapping[str, Any]) -> None:
    """`LLMRequest.response_format`: a pydantic model class, an OpenAI-shaped schema dict or json_object (see
    `llm.output.spec.output_spec`); a schema dict must be a valid JSON schema within the JSON limits."""
    from llm.output.spec import output_spec

    if extra.get("response_format") is not None:
        raise _fail("give it once: response_format or extra_params['response_format'], not both", "response_format")
    if not isinstance(value, type):
        _check_json(value, "response_format")
    spec = output_spec(value)
    if spec.model is None and spec.schema is not None:
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(spec.schema)
        except jsonschema.SchemaError as exc:
            raise _fail(f"not a valid JSON schema: {exc.message:.200}", "response_format.json_schema.schema") from None


def _check_extra_params(extra: Any, where: str) -> None:
    if not isinstance(extra, Mapping):
        raise _fail("must be a dict", where)
    unknown = [key for key in extra if key not in EXTRA_PARAM_KEYS]
    if unknown:
        raise _fail(f"unknown key(s) {sorted(map(repr, unknown))}; supported: {sorted(EXTRA_PARAM_KEYS)}", where)
    checks: dict[str, Callable[[Any, str], None]] = {
        "top_p": lambda v, w: _check_number(v, w, 0.0, 1.0),
        "frequency_penalty": lambda v, w: _check_number(v, w, -2.0, 2.0),
        "presence_penalty": lambda v, w: _check_number(v, w, -2.0, 2.0),
        "top_k": lambda v, w: _check_int(v, w, 1, MAX_INT32),
        "seed": lambda v, w: _check_int(v, w, -(2**63), 2**63 - 1),
        "user": _check_string,
        "stop": _check_stop,
        "response_format": _check_response_format,
        "model_name_override": lambda v, w: _check_string(v, w, non_empty=True),
    }
    for key, value in extra.items():
        if value is not None:
            checks[key](value, f"{where}.{key}")
