import hashlib
import pytest
from fastapi.testclient import TestClient
from app.main import create_app
from tests.integration.conftest import settings_from_env, iris_spec
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration
RESULTS = []

@pytest.mark.parametrize("i", range(8))
def test_probe(settings_env, i):
    key = next(f"k{n}" for n in range(100000) if hashlib.sha256(f"k{n}".encode()).hexdigest().startswith("ff"))
    with TestClient(create_app(settings_from_env(settings_env)), raise_server_exceptions=False) as c:
        wait_for(lambda: c.get("/readyz").status_code == 200, 30, "ready", interval=0.02)
        r = c.post("/v1/jobs", json=iris_spec(), headers={"Idempotency-Key": key})
        RESULTS.append(r.status_code)
    print("RESULTS", RESULTS)
