"""zootrain: distributed training of scikit-learn models, coordinated by Apache ZooKeeper."""

# The version, written here only: pyproject.toml reads it (dynamic = ["version"]), and so do the
# job service's OpenAPI document, the client's User-Agent and `zootrain --version`. A literal, so
# that setuptools reads it without importing the package.
__version__ = "0.1.0"
