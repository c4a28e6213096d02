"""The job service's own memory, and one-row predict latency: ``python -m bench.service_memory``.

One real ZooKeeper, one worker, and the job service (``uvicorn app.main:app``) of this tree; with
``--baseline DIR``, also the job service of another source tree (for example the previous
commit, ``git archive <rev> | tar -x -C DIR``) against the same ZooKeeper root and store, so both
serve the same models in the same run. A worker trains three forests on iris first. Then, in
``--rounds`` alternating rounds (the figures are the median of the rounds), each build is started
afresh and measured:

- RSS of the job-service process (uvicorn, one process) once /readyz is 200 and it has idled 2 s;
- one-row predict latency: ``--requests`` sequential POST /predict of one row on one keep-alive
  connection, after 20 warm-up requests: p50 and p99;
- RSS of the job-service process after a load: 8 concurrent clients predicting 1 and 100 rows
  across the three models, and a submit of each model's spec per client (validated, queued);
- the memory the service and its children take in all, as PSS (each shared page counted once,
  split between its sharers): this tree's forkserver and prediction processes hold scikit-learn,
  so the service's own RSS is not the whole story.

The goal is the job service's own RSS under 120 MB after start-up and after the load, with the
one-row predict p50 within 1 ms of the baseline's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.harness import AUTH, auth_env
from bench.process_stats import rss_bytes
from testkit.processes import end
from testkit.stack import descendants, wait_for, wait_job
from testkit.zkserver import ZooKeeperCluster, free_port

ROOT = Path(__file__).resolve().parents[1]
GOAL_RSS = 120 * 1024 * 1024
ROW = [5.1, 3.5, 1.4, 0.2]
MODELS = ("bench-memory-a", "bench-memory-b", "bench-memory-c")


def spec(name: str, trees: int) -> dict[str, Any]:
    return {
        "model_name": name,
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": trees, "max_depth": 8},
        "dataset": {"kind": "builtin", "name": "iris"},
        "shards": 4,
    }


@dataclass
class Round:
    rss_start: float
    rss_loaded: float
    pss_loaded: float
    children: float
    p50: float
    p99: float


@dataclass
class Build:
    name: str
    source: Path
    rounds: list[Round] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(r, attribute) for r in self.rounds)


def environment(source: Path, settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOOTRAIN_")}
    env.update(settings)
    env["PYTHONPATH"] = str(source)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start(
    argv: list[str], source: Path, settings: dict[str, str], log: Path
) -> subprocess.Popen[Any]:
    return subprocess.Popen(
        argv,
        cwd=source,
        env=environment(source, settings),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[Any]) -> None:
    end(process, grace=20, kill_group=True)


def start_api(source: Path, settings: dict[str, str], log: Path) -> tuple[Any, str]:
    """``uvicorn app.main:app`` of the tree ``source`` (this interpreter, its PYTHONPATH the
    tree), once /readyz answers 200."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    process = start([*argv, "--port", str(port)], source, settings, log)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(lambda: ready() or process.poll() is not None, 120, "the job service")
    if process.poll() is not None:
        raise RuntimeError(f"the job service of {source} stopped: {log.read_text()[-2000:]}")
    return process, url


def pss_bytes(pid: int) -> float:
    """Proportional set size: the process's private pages plus its share of pages it shares
    (a forked child shares its forkserver's until it writes them). Summed over processes, it
    is the memory they take in all, with no page counted twice."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


def children_memory(pid: int) -> float:
    return sum(pss_bytes(child) for child in descendants(pid))


def one_row_latencies(url: str, requests: int) -> list[float]:
    times = []
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
        for i in range(20 + requests):
            started = time.perf_counter()
            response = client.post(f"/v1/models/{MODELS[0]}/predict", json={"instances": [ROW]})
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            if i >= 20:
                times.append(elapsed)
    return times


async def load(url: str, requests: int) -> None:
    async def client_load(index: int) -> None:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=120) as client:
            for i in range(requests):
                model = MODELS[(index + i) % len(MODELS)]
                rows = [ROW] * (100 if i % 4 == 0 else 1)
                response = await client.post(
                    f"/v1/models/{model}/predict", json={"instances": rows}
                )
                response.raise_for_status()
            for model in MODELS:
                submitted = await client.post("/v1/jobs", json=spec(model, 2))
                submitted.raise_for_status()

    await asyncio.gather(*(client_load(i) for i in range(8)))


def measure(build: Build, settings: dict[str, str], directory: Path, requests: int) -> Round:
    log = directory / f"api-{build.name}.log"
    process, url = start_api(build.source, settings, log)
    try:
        time.sleep(2.0)
        rss_start = rss_bytes(process.pid) or 0.0
        times = one_row_latencies(url, requests)
        asyncio.run(load(url, max(20, requests // 4)))
        time.sleep(1.0)
        rss_loaded = rss_bytes(process.pid) or 0.0
        pss_loaded = pss_bytes(process.pid)
        children = children_memory(process.pid)
    finally:
        stop(process)
    quantiles = statistics.quantiles(times, n=100)
    return Round(
        rss_start, rss_loaded, pss_loaded, children, statistics.median(times), quantiles[98]
    )


def mb(value: float) -> str:
    return f"{value / 2**20:.0f} MB"


def report(builds: list[Build]) -> str:
    base = builds[-1] if len(builds) > 1 else None
    lines = [
        "| build | RSS after start | RSS after load | service + its children, PSS after load "
        "| predict p50, 1 row | p99 | goal (RSS ≤ 120 MB) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for build in builds:
        start_rss, loaded = build.median("rss_start"), build.median("rss_loaded")
        p50 = build.median("p50")
        delta = ""
        if base is not None and build is not base:
            delta = f" ({(p50 - base.median('p50')) * 1000:+.2f} ms vs {base.name})"
        met = "met" if max(start_rss, loaded) <= GOAL_RSS else "not met"
        lines.append(
            f"| {build.name} | {mb(start_rss)} | {mb(loaded)} "
            f"| {mb(build.median('pss_loaded'))} + {mb(build.median('children'))} "
            f"| {p50 * 1000:.2f} ms{delta} | {build.median('p99') * 1000:.2f} ms | {met} |"
        )
    rounds = len(builds[0].rounds)
    lines.append("")
    lines.append(f"Median of {rounds} rounds; each round starts every build's job service afresh.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service_memory", description=__doc__)
    parser.add_argument("--baseline", type=Path, help="another source tree to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    builds = [Build("this tree", ROOT)]
    if args.baseline is not None:
        builds.append(Build("baseline", args.baseline.resolve()))
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        directory = Path(tmp)
        zk = ZooKeeperCluster(directory / "zk", size=1).start()
        settings = {
            "ZOOTRAIN_ZK_HOSTS": zk.hosts,
            "ZOOTRAIN_ZK_ROOT": f"/bench-memory-{uuid.uuid4().hex[:6]}",
            "ZOOTRAIN_ARTIFACTS": str(directory / "artifacts"),
            "ZOOTRAIN_ZK_SESSION_TIMEOUT": "10",
            "ZOOTRAIN_HOUSEKEEPING_INTERVAL": "3600",
            **auth_env(),
        }
        worker = start([sys.executable, "-m", "workers"], ROOT, settings, directory / "worker.log")
        try:
            process, url = start_api(ROOT, settings, directory / "api-train.log")
            try:
                with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
                    for name, trees in zip(MODELS, (25, 50, 100), strict=True):
                        job = client.post("/v1/jobs", json=spec(name, trees)).json()
                        assert wait_job(client, job["id"], 600)["state"] == "succeeded"
            finally:
                stop(process)
            for _ in range(args.rounds):
                for build in builds:
                    build.rounds.append(measure(build, settings, directory, args.requests))
                    print(f"{build.name}: {build.rounds[-1]}", file=sys.stderr)
        finally:
            stop(worker)
            zk.stop()
    print(report(builds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
