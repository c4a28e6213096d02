import pytest
from tests.integration.test_bad_input import BAD_BODIES
pytestmark = pytest.mark.integration
from tests.integration.test_bad_input import small_api  # noqa
def test_show(small_api):
    for name, body, st, _ in BAD_BODIES:
        r = small_api.post("/v1/jobs", json=body)
        print(name, r.status_code, r.json()["detail"][:160])
