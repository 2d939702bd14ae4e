"""Dev convenience: the upload page of ``web/`` served by the local API for GETs no route takes.

``/`` and ``/web/`` give ``index.html``; ``/<file>`` and ``/web/<file>`` give that file of ``web/``
(so the page's relative links work under both). Anything else, or any other method, is left to
the API's own 404. Nothing of this exists in AWS: there the page is a static site of its own.

``/config.json`` (the page's settings, which a deploy writes beside the page in AWS) is made here, not
read from ``web/``: ``{}`` for an open stack (the API is the page's own origin), and with ``--auth jwt``
the local issuer the page signs in with: ``{"oidc": {"issuer": ..., "client_id": "image-uploads-local"}}``.
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from urllib.parse import unquote

from local_stack.api_gateway import Request, Response
from local_stack.oidc import CLIENT_ID
from local_stack.template import REPO_ROOT

WEB_DIR = REPO_ROOT / "web"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json"}


class StaticSite:
    """A fallback for ``HttpApi``: a ``Response`` for a file of ``root``, or None."""

    def __init__(self, root: Path = WEB_DIR, *, issuer: str | None = None) -> None:
        self.root = root.resolve()
        config = {"oidc": {"issuer": issuer, "client_id": CLIENT_ID}} if issuer else {}
        self.config = json.dumps(config).encode()

    def __call__(self, request: Request) -> Response | None:
        if request.method.upper() not in ("GET", "HEAD"):
            return None
        path = unquote(request.raw_path)
        if path == "/web" or path.startswith("/web/"):
            path = path[len("/web") :]
        name = path.lstrip("/") or "index.html"
        if name == "config.json":
            headers = [
                ("Content-Type", "application/json"),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ]
            return Response(200, headers, self.config)
        file = (self.root / name).resolve()
        if not file.is_relative_to(self.root) or not file.is_file():
            return None
        kind = _TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind == "application/json":
            kind += "; charset=utf-8"
        headers = [
            ("Content-Type", kind),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
        ]
        return Response(200, headers, file.read_bytes())
