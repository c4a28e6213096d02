"""``zootrain models``, ``delete-model`` and ``predict``: published models."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from zootrain.cli.plumbing import (
    Json,
    Token,
    Url,
    app,
    call_and_print,
    emit_json,
    err,
    fail,
    out,
    service,
)
from zootrain.cli.render import BOX, metrics_text, version_table

if TYPE_CHECKING:
    from zootrain.inputs import InputColumn
    from zootrain.records import VersionRecord
    from zootrain.views import ModelSummary, PredictResponse


@app.command()
def models(
    name: Annotated[str | None, typer.Argument(help="A model: list its versions.")] = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="With NAME: one version in detail.")
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Models and their latest versions; with NAME, that model's versions."""
    if version is not None and name is None:
        raise typer.BadParameter("--version needs a model NAME", param_hint="--version")
    if name is None:
        call_and_print(url, token, as_json, lambda c: c.models(), print_models)
    elif version is None:
        call_and_print(url, token, as_json, lambda c: c.versions(name), print_versions)
    else:
        call_and_print(url, token, as_json, lambda c: c.version(name, version), print_version)


def print_models(summaries: list[ModelSummary]) -> None:
    table = Table(box=BOX)
    for column in ("model", "latest version", "versions", "serving", "aliases"):
        table.add_column(column)
    for summary in summaries:
        latest = summary.latest_version
        serving = "" if summary.serving_version is None else f"v{summary.serving_version}"
        if summary.serving:
            serving += f" ({summary.serving})"
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(summary.aliases.items()))
        table.add_row(summary.name, str(latest or ""), str(summary.versions), serving, aliases)
    out.print(table)


def print_versions(versions: list[VersionRecord]) -> None:
    out.print(version_table(versions))


def print_version(record: VersionRecord) -> None:
    out.print(version_table([record]))
    shards = Table(title="shard models", title_justify="left", box=BOX)
    for column in ("shard", "rows", "metrics"):
        shards.add_column(column)
    for shard in record.shard_metrics:
        shards.add_row(str(shard.index), str(shard.rows), metrics_text(shard.metrics))
    out.print(shards)
    out.print(f"sha256 {record.sha256}  {record.size} bytes", style="bright_black", soft_wrap=True)


@app.command("delete-model")
def delete_model(
    name: Annotated[str, typer.Argument(metavar="MODEL")],
    version: Annotated[
        int | None, typer.Option(min=1, help="Only this version (default: every version).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Delete a model version, or every version of a model (needs the admin scope)."""
    what = f"{name} version {version}" if version is not None else f"every version of {name}"
    if not yes and not typer.confirm(f"Delete {what}? Its file leaves the store", default=False):
        raise typer.Exit(1)
    with service(url, token) as client:
        client.delete_model(name, version)
    err.print(f"deleted {what}")


def read_rows(path: Path, text: str | None = None) -> list[list[float]]:
    """Numeric CSV rows; a first row that is not all numbers is a header and skipped."""
    if text is None:
        text = read_text(path)
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if rows and not all(_is_number(cell) for cell in rows[0]):
        rows = rows[1:]
    values: list[list[float]] = []
    for number, row in enumerate(rows, start=1):
        try:
            values.append([float(cell) for cell in row])
        except ValueError:
            bad = next(c for c in row if not _is_number(c))
            raise typer.BadParameter(
                f"{path}: data row {number} has a non-numeric value {bad!r}", param_hint="--csv"
            ) from None
    if not values:
        raise typer.BadParameter(f"{path} has no rows of feature values", param_hint="--csv")
    return values


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@app.command()
def predict(
    model: Annotated[str, typer.Argument(metavar="MODEL")],
    csv_file: Annotated[
        Path,
        typer.Option(
            "--csv",
            help="Rows to predict (- for stdin). For a model trained on an uploaded dataset: "
            "its columns with a header row, sent as raw rows; otherwise numeric features (a "
            "header row is skipped).",
        ),
    ],
    version: Annotated[
        int | None,
        typer.Option(min=1, help="Model version \\[default: the champion's, else latest]."),
    ] = None,
    alias: Annotated[str | None, typer.Option(help="The version this alias points at.")] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Predictions of a published model for every row of a CSV file."""
    if version is not None and alias is not None:
        raise typer.BadParameter("give --version or --alias, not both", param_hint="--alias")
    text = read_text(csv_file)
    if not has_header(text):
        # Numbers only: encoded feature vectors, checked here before anything is sent.
        rows = read_rows(csv_file, text)
        call_and_print(
            url,
            token,
            as_json,
            lambda c: c.predict(model, rows, version, alias=alias),
            print_predictions,
        )
        return
    with service(url, token) as client:
        # The version is fixed first, so that the rows are read with its own input schema and
        # predicted by it even if an alias moves meanwhile.
        if version is None:
            view = client.model(model)
            version = view.aliases.get(alias) if alias is not None else view.serving_version
            if version is None:
                what = f"no alias {alias!r}" if alias else "no version"
                fail(f"model {model} has {what}")
        record = client.version(model, version)
        if record.input_schema:
            split = read_raw_rows(csv_file, text, record.input_schema)
            result = client.predict(model, None, version, dataframe_split=split)
        else:
            result = client.predict(model, read_rows(csv_file, text), version)
    if as_json:
        emit_json(result)
    else:
        print_predictions(result)


def has_header(text: str) -> bool:
    first = next((row for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)), [])
    return bool(first) and not all(_is_number(cell) for cell in first)


def read_text(path: Path) -> str:
    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise typer.BadParameter(str(exc), param_hint="--csv") from None


def read_raw_rows(path: Path, text: str, schema: list[InputColumn]) -> dict[str, Any]:
    """A CSV with a header as MLflow's dataframe_split, each cell typed by the model's input
    schema (numbers, true/false, categories as text); a cell that does not parse is sent as
    text, and the service's 422 names its row and column."""
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise typer.BadParameter(
            f"{path} needs a header row and at least one row of values", param_hint="--csv"
        )
    header, body = [cell.strip() for cell in rows[0]], rows[1:]
    kinds = {column.name: column.type for column in schema}
    data = [
        [_typed(cell, kinds.get(name)) for name, cell in zip(header, row, strict=False)]
        + [None] * (len(header) - len(row))
        for row in body
    ]
    return {"columns": header, "data": data}


def _typed(cell: str, kind: str | None) -> Any:
    text = cell.strip()
    if kind == "number":
        try:
            return int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            return text
    if kind == "boolean":
        return {"true": True, "false": False, "1": True, "0": False}.get(text.lower(), text)
    return text


def print_predictions(result: PredictResponse) -> None:
    table = Table(title=f"{result.model} v{result.version}", title_justify="left", box=BOX)
    table.add_column("row", justify="right")
    table.add_column("prediction")
    for number, prediction in enumerate(result.predictions, start=1):
        table.add_row(str(number), str(prediction))
    out.print(table)
