"""``zootrain datasets upload``, ``list`` and ``show``: uploaded datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from zootrain.cli.plumbing import Json, Token, Url, call_and_print, datasets_app, out
from zootrain.cli.render import dataset_detail, dataset_list_table


@datasets_app.command("upload")
def datasets_upload(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV or Parquet.")
    ],
    name: Annotated[
        str | None, typer.Option(help="A name to show \\[default: the file's].")
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Upload a dataset file (CSV with a header row, or Parquet)."""
    call_and_print(url, token, as_json, lambda c: c.upload_dataset(file, name=name), print_uploaded)


def print_uploaded(record: Any) -> None:
    if not isinstance(record, dict):
        return
    out.print(dataset_detail(record))
    if "id" in record:
        out.print(
            f'use it in a job spec as {{"kind": "uploaded", "id": "{record["id"]}", '
            '"target": "<column>"}',
            style="bright_black",
            soft_wrap=True,
            markup=False,
        )


@datasets_app.command("list")
def datasets_list(
    limit: Annotated[int | None, typer.Option(min=1, max=500, help="Datasets per page.")] = None,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Uploaded datasets, newest first."""
    call_and_print(
        url,
        token,
        as_json,
        lambda c: c.list_datasets(limit, cursor),
        print_dataset_page,
    )


def print_dataset_page(page: Any) -> None:
    items = page.get("items", []) if isinstance(page, dict) else page
    out.print(dataset_list_table([i for i in items if isinstance(i, dict)]))
    if isinstance(page, dict) and page.get("next_cursor"):
        out.print(
            f"more: zootrain datasets list --cursor {page['next_cursor']}",
            style="bright_black",
            soft_wrap=True,
        )


@datasets_app.command("show")
def datasets_show(
    dataset_id: Annotated[str, typer.Argument(metavar="ID")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """One uploaded dataset with its columns."""
    call_and_print(url, token, as_json, lambda c: c.get_dataset(dataset_id), print_dataset)


def print_dataset(record: Any) -> None:
    if isinstance(record, dict):
        out.print(dataset_detail(record))
