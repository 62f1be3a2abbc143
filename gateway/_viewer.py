"""The web viewer: one self-contained page that shows a session's timeline, live.

`GET /` lists the tenant's sessions and `GET /view/{session_id}` follows one; both serve the
same page (`viewer.html`: inline CSS and JS, nothing fetched from elsewhere). The page holds
no data and needs no key to load: it asks for one, keeps it in the browser, and reads `/v1`
with it like any other client, the stream through fetch since EventSource cannot send a
bearer key. `#key=...` in the URL hands it a key once (then it is taken out of the address
bar). Event text is untrusted: the page renders it as text only, and its Content-Security-
Policy runs nothing but the page's own inline script and style, by their hashes.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources
from typing import Final

from fastapi import FastAPI, Response

_PAGE: Final = (resources.files("gateway") / "viewer.html").read_text(encoding="utf-8")


def _digests(tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", _PAGE, flags=re.DOTALL)
    assert blocks, f"viewer.html has no <{tag}>"
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'"
        for block in blocks
    )


_HEADERS: Final = {
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_digests('script')}; style-src {_digests('style')}; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _page() -> Response:
    return Response(_PAGE, media_type="text/html; charset=utf-8", headers=_HEADERS)


def install_viewer(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return _page()

    @app.get("/view/{session_id}", include_in_schema=False)
    async def view(session_id: str) -> Response:
        return _page()
