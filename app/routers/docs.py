"""/docs: Swagger UI, served from the swagger-ui-bundle-v2 package rather than a CDN, so that
the API's documentation works on a cluster without internet access."""

from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"

router = APIRouter(include_in_schema=False)

_PAGE = get_swagger_ui_html(
    openapi_url="/openapi.json",
    title="zootrain - Swagger UI",
    swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
    swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
    swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
    oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
).body
INLINE_SCRIPT = re.findall(rb"<script>(.*?)</script>", _PAGE, re.DOTALL)[-1].decode()
"""The page's one inline script (it starts Swagger UI): allowed by its hash in the CSP."""


@router.get(DOCS_PATH)
async def swagger_ui() -> HTMLResponse:
    return HTMLResponse(_PAGE)


@router.get(OAUTH2_REDIRECT_PATH)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


assets = StaticFiles(directory=swagger_ui_path)
