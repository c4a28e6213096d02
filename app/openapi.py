"""``python -m app.openapi``: print the job service's OpenAPI document (see `make openapi`)."""

from __future__ import annotations

import json

from app.main import create_app


def document() -> str:
    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(document(), end="")
