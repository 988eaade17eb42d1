"""`scout-llm ask`: the prompt from the argument or stdin, backend and model from `-b`/`-m`, an optional schema, and the
answer streamed or printed as JSON (README "The CLI")."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from llm.console.command import EXIT_OK, EXIT_USAGE, CLIError, configured_manager, note
from llm.console.render import failover_note, response_dict, stream_answer

__all__ = ["configure_ask", "run_ask"]


def configure_ask(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", help="the question; `-` or none reads it from stdin (when piped)")
    parser.add_argument("-b", "--backend", help="backend to try first: openai, claude (anthropic), gemini (google), "
                        "ollama, deepseek, local")
    parser.add_argument("-m", "--model", help="model name, or provider:model (anthropic:claude-sonnet-4-6)")
    parser.add_argument("--system", help="system prompt")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--json", action="store_true", help="print the whole response as JSON instead of streaming")
    parser.add_argument("--schema", type=Path, metavar="FILE.json",
                        help="structured output: a JSON schema (or an OpenAI response_format) the answer must match; "
                             "prints the parsed object as JSON")


def read_prompt(args: argparse.Namespace, stdin: TextIO) -> str:
    """The prompt: the argument, or stdin when it is `-` or absent (and stdin is not a terminal).

    Raises:
        CLIError: no prompt, or a blank one (exit 2, before any request).
    """
    prompt = args.prompt
    if prompt is None or prompt == "-":
        if prompt is None and stdin.isatty():
            raise CLIError("give a prompt: scout-llm ask \"...\", or pipe one: echo \"...\" | scout-llm ask",
                           EXIT_USAGE)
        prompt = stdin.read().rstrip("\r\n")  # `echo` ends it with a newline that is not part of the question
    if not prompt.strip():
        raise CLIError("the prompt is empty: nothing was sent", EXIT_USAGE)
    return str(prompt)


def choose_backend(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(backend, model) from `--backend` and `--model`, which may be `provider:model`."""
    from llm.core.names import canonical_backend, split_model_ref

    provider, model = split_model_ref(args.model) if args.model else (None, None)
    backend = canonical_backend(args.backend) if args.backend else None
    if provider and backend and provider != backend:
        raise CLIError(f"--backend {args.backend} and --model {args.model} name different backends", EXIT_USAGE)
    return provider or backend, model


def request_from(args: argparse.Namespace, prompt: str, model: str | None) -> Any:
    from llm.base import LLMRequest

    extra = {"model_name_override": model} if model else {}
    schema = getattr(args, "schema", None)
    return LLMRequest(messages=[{"role": "user", "content": prompt}], system_prompt=args.system,
                      temperature=args.temperature, max_tokens=args.max_tokens, extra_params=extra,
                      response_format=read_schema(schema) if schema is not None else None)


def read_schema(path: Path) -> dict[str, Any]:
    """`--schema FILE.json`: an OpenAI-shaped `response_format` as it is, or a bare JSON schema wrapped in one (named
    after the file).

    Raises:
        CLIError: the file cannot be read or holds no JSON object (exit 2, before any request).
    """
    import re

    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CLIError(f"cannot read the schema {path}: {exc}", EXIT_USAGE) from None
    if not isinstance(loaded, dict):
        raise CLIError(f"{path} must hold a JSON object: a JSON schema or a response_format", EXIT_USAGE)
    if loaded.get("type") in ("json_schema", "json_object"):
        return loaded
    name = re.sub(r"[^A-Za-z0-9_-]", "_", path.stem)[:64] or "response"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": loaded}}


async def run_ask(args: argparse.Namespace, out: TextIO) -> int:
    prompt = read_prompt(args, sys.stdin)
    backend, model = choose_backend(args)
    manager = await configured_manager()
    request = request_from(args, prompt, model)
    if args.json:
        response = await manager.generate(request, backend_type=backend)
        out.write(json.dumps(response_dict(response), indent=2) + "\n")
    elif request.response_format is not None:
        response = await manager.generate(request, backend_type=backend)
        out.write(json.dumps(response.parsed, indent=2, ensure_ascii=False) + "\n")
    else:
        response = await stream_answer(manager.stream(request, backend_type=backend), out)
    failover = failover_note(response)
    if failover:
        note(failover)
    return EXIT_OK
