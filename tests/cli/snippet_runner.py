"""Run one README snippet as a user would paste it: top-level `await` allowed (as in `python -m asyncio`)."""

import ast
import asyncio
import inspect
import sys
from pathlib import Path

source = Path(sys.argv[1]).read_text(encoding="utf-8")
code = compile(source, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__"}
if code.co_flags & inspect.CO_COROUTINE:
    asyncio.run(eval(code, namespace))
else:
    exec(code, namespace)
