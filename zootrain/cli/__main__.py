"""``python -m zootrain.cli``: the command-line client."""

from zootrain.cli import app

app()
