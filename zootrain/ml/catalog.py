"""What the job records need to know of the ML side, without importing scikit-learn.

zootrain.records (and with it every process that reads a job record: the job service, a
worker's main process) imports this module, not zootrain.ml.algorithms: importing scikit-learn
(with scipy and pandas) costs a process about 170 MB. zootrain.ml.algorithms checks at import
that ALGORITHM_NAMES lists exactly its algorithms, in its order.
"""

from __future__ import annotations

ALGORITHM_NAMES: tuple[str, ...] = (
    "random_forest_classifier",
    "random_forest_regressor",
    "extra_trees_classifier",
    "extra_trees_regressor",
    "sgd_classifier",
    "sgd_regressor",
    "logistic_regression",
    "linear_regression",
    "ridge",
    "gaussian_nb",
    "multinomial_nb",
    "kmeans",
)


class ParamError(ValueError):
    """A user-supplied parameter is unknown, reserved or has a bad value."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
