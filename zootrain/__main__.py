"""``python -m zootrain``: the command-line client (see zootrain.cli)."""

from zootrain.cli import app

app(prog_name="zootrain")
