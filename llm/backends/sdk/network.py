"""What every backend's HTTP client takes from the environment: one rule for all of them.

A client connects only where the settings say. It is built with `trust_env=False`, so httpx and httpx2 ignore
`HTTP_PROXY` / `HTTPS_PROXY` / `ALL_PROXY` / `NO_PROXY`, `SSL_CERT_FILE` / `SSL_CERT_DIR` and `.netrc`
(https://www.python-httpx.org/environment_variables/); a proxy is used only when `SCOUT_LLM_PROXY` names one, and
`SCOUT_LLM_TRUST_ENV=true` hands those variables back to the HTTP library. Credentials are a separate rule, kept by each
adapter: every key and header an SDK would read from its own environment variables is passed explicitly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["network_options"]


def network_options() -> dict[str, Any]:
    """The `trust_env` and `proxy` keywords of an httpx / httpx2 `AsyncClient`, from the settings
    (`SCOUT_LLM_TRUST_ENV`, `SCOUT_LLM_PROXY`), read when a client is created."""
    from llm.config import get_config  # here: importing an adapter reads no settings

    settings = get_config().llm
    options: dict[str, Any] = {"trust_env": settings.trust_env}
    if settings.proxy is not None:
        options["proxy"] = settings.proxy.get_secret_value()
    return options
