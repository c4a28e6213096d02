"""``zootrain models``, ``delete-model`` and ``predict``: published models."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from zootrain.cli.plumbing import Json, Token, Url, app, call_and_print, err, out, service
from zootrain.cli.render import BOX, metrics_text, version_table

if TYPE_CHECKING:
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
    for column in ("model", "latest version", "versions"):
        table.add_column(column)
    for summary in summaries:
        latest = summary.latest_version
        table.add_row(summary.name, str(latest or ""), str(summary.versions))
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


def read_rows(path: Path) -> list[list[float]]:
    """Numeric CSV rows; a first row that is not all numbers is a header and skipped."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise typer.BadParameter(str(exc), param_hint="--csv") from None
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
            "--csv", help="Rows of numeric features (- for stdin); a header row is skipped."
        ),
    ],
    version: Annotated[
        int | None, typer.Option(min=1, help="Model version \\[default: latest].")
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Predictions of a published model for every row of a CSV file."""
    rows = read_rows(csv_file)
    call_and_print(
        url,
        token,
        as_json,
        lambda c: c.predict(model, rows, version),
        print_predictions,
    )


def print_predictions(result: PredictResponse) -> None:
    table = Table(title=f"{result.model} v{result.version}", title_justify="left", box=BOX)
    table.add_column("row", justify="right")
    table.add_column("prediction")
    for number, prediction in enumerate(result.predictions, start=1):
        table.add_row(str(number), str(prediction))
    out.print(table)
