"""Per-class quality of a published version, and the classes a merge lost.

A merged model can score well on accuracy and still never predict a rare class: a forest of
trees each grown on a small data shard sees a handful of the rare rows, and averaging the
shards' votes drowns them (measured in bench/quality.py, docs/models.md). Accuracy alone hides
that, so every classifier version records precision, recall and support class by class for
the merged model, for the baseline (one model on all training rows) when the job has one, and
for every shard model, all on the job's held-out split; a class whose recall fell by more than
``RECALL_DROP`` against the baseline or against the best shard is flagged.

Pydantic only, like the records that hold these: the numbers are computed by the training
children (zootrain.ml.scoring.per_class); the job service, the CLI and the client only read
them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RECALL_DROP = 0.10
"""A class is flagged when its recall fell by more than this (10 points) against a reference."""

NO_PER_CLASS = {
    "regression": "a regression job has no classes: no per-class metrics",
    "clustering": "a clusterer predicts cluster ids, not the dataset's classes: no per-class "
    "metrics",
}


class ClassMetrics(BaseModel):
    """One class's scores on the held-out split (scikit-learn's precision_recall_fscore_support,
    zero where undefined: a class never predicted has precision 0)."""

    model_config = ConfigDict(extra="ignore")

    label: Any = Field(description="The class, as in the version's `classes`")
    precision: float
    recall: float
    f1: float
    support: int = Field(description="Held-out rows of this class")


class RecallDrop(BaseModel):
    """A class whose recall in the merged model fell by more than RECALL_DROP against the
    baseline or the best shard."""

    model_config = ConfigDict(extra="ignore")

    label: Any
    recall: float = Field(description="The merged model's recall of this class")
    against: Literal["baseline", "best_shard"]
    reference_recall: float
    shard: int | None = Field(None, description="against best_shard: the shard's index")
    support: int

    @property
    def drop(self) -> float:
        return self.reference_recall - self.recall

    def sentence(self) -> str:
        reference = "the baseline" if self.against == "baseline" else f"shard {self.shard}"
        return (
            f"class {self.label!r}: recall {self.recall:.1%} in the merged model against "
            f"{self.reference_recall:.1%} in {reference} ({self.drop * 100:.1f} points lower, "
            f"{self.support} held-out rows)"
        )


class ClassReport(BaseModel):
    """A version's per-class metrics: the merged model's, the baseline's, every shard's, and the
    classes flagged. For a regression or clustering job only ``note`` is set."""

    model_config = ConfigDict(extra="ignore")

    merged: list[ClassMetrics] = Field(default_factory=list)
    baseline: list[ClassMetrics] | None = Field(
        None, description="The baseline's (spec.baseline), on the same held-out rows"
    )
    shards: list[list[ClassMetrics]] | None = Field(
        None, description="Each shard model's, in shard order, on the same held-out rows"
    )
    best_shard: int | None = Field(
        None, description="The shard model with the highest macro F1 on the held-out split"
    )
    recall_drops: list[RecallDrop] = Field(
        default_factory=list,
        description=f"Classes whose recall fell by more than {RECALL_DROP:.0%} (absolute) "
        "against the baseline or the best shard",
    )
    note: str | None = Field(None, description="Why there are no per-class metrics, if so")


def macro_f1(metrics: list[ClassMetrics]) -> float:
    """The mean F1 over the classes present in the held-out split."""
    present = [m.f1 for m in metrics if m.support > 0]
    return sum(present) / len(present) if present else 0.0


def best_shard(shards: list[list[ClassMetrics]]) -> int | None:
    """The shard whose model has the highest macro F1 (the first of equals): the one a user
    would have kept had they trained on one shard. Macro, so a shard that knows every class
    beats one that is a little more accurate on the common ones."""
    if not shards:
        return None
    scores = [macro_f1(s) for s in shards]
    return scores.index(max(scores))


def recall_drops(
    merged: list[ClassMetrics],
    *,
    baseline: list[ClassMetrics] | None = None,
    shard: list[ClassMetrics] | None = None,
    shard_index: int | None = None,
    threshold: float = RECALL_DROP,
) -> list[RecallDrop]:
    """The classes whose merged recall is more than ``threshold`` below the baseline's or the
    shard's, class by class (matched by label). A class absent from the held-out split
    (support 0) has no recall to lose and is never flagged."""
    references: list[tuple[Literal["baseline", "best_shard"], list[ClassMetrics] | None]] = [
        ("baseline", baseline),
        ("best_shard", shard),
    ]
    drops: list[RecallDrop] = []
    for against, reference in references:
        if reference is None:
            continue
        by_label = {_key(m.label): m for m in reference}
        for ours in merged:
            theirs = by_label.get(_key(ours.label))
            if theirs is None or ours.support == 0:
                continue
            # A tiny epsilon so that a drop of exactly the threshold (10.0 points, in binary
            # floating point sometimes 10.000000000000002) is not flagged.
            if theirs.recall - ours.recall > threshold + 1e-9:
                drops.append(
                    RecallDrop(
                        label=ours.label,
                        recall=ours.recall,
                        against=against,
                        reference_recall=theirs.recall,
                        shard=shard_index if against == "best_shard" else None,
                        support=ours.support,
                    )
                )
    return drops


def build_report(
    merged: list[ClassMetrics],
    *,
    baseline: list[ClassMetrics] | None,
    shards: list[list[ClassMetrics]] | None,
) -> ClassReport:
    """The report a classifier version records: the flags against the baseline and against
    the best shard."""
    best = best_shard(shards) if shards else None
    drops = recall_drops(
        merged,
        baseline=baseline,
        shard=shards[best] if shards and best is not None else None,
        shard_index=best,
    )
    return ClassReport(
        merged=merged, baseline=baseline, shards=shards, best_shard=best, recall_drops=drops
    )


def _key(label: Any) -> str:
    # Labels come back from JSON: 1 and 1.0 and "1" must not be told apart by type alone.
    return repr(label) if isinstance(label, str) else repr(float(label))
