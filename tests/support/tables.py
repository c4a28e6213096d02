"""The tables the upload tests send: a small flowers table with every kind of column (floats,
integers or more floats, booleans, text, a class and a numeric target), as CSV or Parquet."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd


def flowers(n: int, seed: int, *, petals: bool = False, rounded: bool = False) -> pd.DataFrame:
    """``n`` flowers whose size sets their species and price. The second column is a float
    ``width``, or with ``petals`` an integer count of petals; ``rounded`` writes the floats with
    a few decimals, as a hand-made CSV would have them."""
    rng = np.random.default_rng(seed)
    species = rng.choice(["setosa", "versicolor", "virginica"], n)
    size = np.where(species == "setosa", 1.0, np.where(species == "versicolor", 3.0, 5.0))

    def decimals(values: np.ndarray, places: int) -> np.ndarray:
        return np.round(values, places) if rounded else values

    # Columns are drawn in this order, whichever the second one is.
    length = decimals(size + rng.normal(0, 0.3, n), 3)
    second = (
        ("petals", rng.integers(3, 7, n))
        if petals
        else ("width", decimals(size / 2 + rng.normal(0, 0.2, n), 3))
    )
    return pd.DataFrame(
        {
            "length": length,
            second[0]: second[1],
            "wild": rng.integers(0, 2, n).astype(bool),
            "color": rng.choice(["red", "blue", "white"], n),
            "species": species,
            "price": decimals(10 * size + rng.normal(0, 1, n), 2),
        }
    )


def csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return buffer.getvalue()
