"""A submit answers with the job's records as written (zootrain.queue.job_view_json): the very
JSON JobView dumps for them, so the response did not change when the dump went away."""

from __future__ import annotations

import json

import pytest

from testkit.bench_specs import search_spec, submit_spec
from tests.support.specs import iris_spec
from zootrain.queue import job_view_json
from zootrain.records import JobRecord, JobSpec, PartitionChoice, ShardRecord, new_job_id, utcnow
from zootrain.views import JobView


@pytest.mark.parametrize(
    "raw", [iris_spec(), submit_spec(), iris_spec(baseline=True), search_spec(1_000, 5)]
)
def test_the_written_records_make_the_views_json(raw: dict[str, object]) -> None:
    spec = JobSpec.model_validate(raw)
    now = utcnow()
    job = JobRecord(
        id=new_job_id(),
        spec=spec,
        owner="bench",
        created_at=now,
        updated_at=now,
        partition_choice=PartitionChoice(strategy="random", reason="why not"),
        warnings=['a warning with "quotes" and ]} in it'],
    )
    shards = [ShardRecord(index=i, role=spec.role(i)) for i in range(spec.tasks)]
    made = job_view_json(job.dump(), [shard.dump() for shard in shards])
    fields = {name: getattr(job, name) for name in type(job).model_fields}
    view = JobView.model_construct(**fields, shards=shards)
    assert made == view.model_dump_json().encode()
    assert JobView.model_validate_json(made) == view
    assert [s["index"] for s in json.loads(made)["shards"]] == list(range(spec.tasks))
