"""The job spec in the OpenAPI document: one branch per algorithm, chosen by ``algorithm``.

The spec's model (zootrain.spec.JobSpec) takes ``params`` as an open object and checks it
against the chosen estimator at submit. The document says more: ``JobSpec`` keeps its properties
and gains a ``oneOf`` whose every branch fixes ``algorithm`` and gives ``params`` that
estimator's own schema (zootrain.ml.param_schema: scikit-learn's constraints narrowed by
zootrain's rules), so a client or a generator sees what every algorithm takes, and a fuzzer's
jobs pass validation and reach the queue and the workers.
"""

from __future__ import annotations

import copy
from typing import Any

from zootrain.ml import param_schema

_REF = "#/components/schemas/{}"


def _stem(algorithm: str) -> str:
    return "".join(part.capitalize() for part in algorithm.split("_"))


def add_algorithm_branches(document: dict[str, Any]) -> None:
    """Add to components.schemas.JobSpec a oneOf of one branch per algorithm."""
    components: dict[str, Any] = document["components"]["schemas"]
    base = components["JobSpec"]
    branches: list[dict[str, str]] = []
    mapping: dict[str, str] = {}
    for algorithm, params in sorted(param_schema.load().items()):
        stem = _stem(algorithm)
        components[f"{stem}Params"] = params
        branch = copy.deepcopy(base)
        branch["title"] = f"{stem}JobSpec"
        branch["description"] = f"{base['description']} The {algorithm} branch."
        branch["properties"]["algorithm"] = {
            **base["properties"]["algorithm"],
            "enum": [algorithm],
            "examples": [algorithm],
        }
        branch["properties"]["params"] = {
            "$ref": _REF.format(f"{stem}Params"),
            "description": base["properties"]["params"]["description"],
        }
        components[branch["title"]] = branch
        branches.append({"$ref": _REF.format(branch["title"])})
        mapping[algorithm] = _REF.format(branch["title"])
    # Added to the spec's own schema, not put in its place: what it said stays true (every
    # algorithm in `algorithm`'s enum, `params` an object), and a request must also match the
    # one branch its algorithm names.
    components["JobSpec"] = {
        **base,
        "description": (
            f"{base['description']} One branch per algorithm, chosen by `algorithm`; each "
            "gives `params` its estimator's schema."
        ),
        "oneOf": branches,
        "discriminator": {"propertyName": "algorithm", "mapping": mapping},
    }
