"""kmsframe's HTTP service (starlette + uvicorn). See ``docs/http.md``."""

from .app import build_app
from .runtime import HttpSettings

__all__ = ["HttpSettings", "build_app"]
