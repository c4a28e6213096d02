"""5. Footprint: resident memory of the services, and ZooKeeper's share of one job.

RSS (psutil when the venv has it, else /proc/<pid>/status VmRSS) of the job service and of an
idle worker after they have run a few jobs, with the worker's forkserver (and multiprocessing's
resource tracker) as lines of their own; baseline: a bare ``python -c`` interpreter's RSS.
ZooKeeper: znodes and data bytes of one 4-shard job, submitted with an Idempotency-Key, while
queued (job subtree, queue entry, key) and once published (job subtree, key, version node);
baseline: the request body the client sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import uuid

from kazoo.client import KazooClient

from bench.figures import Figure
from bench.harness import TOKEN_NAME, Context, api_client
from bench.http_load import restarter, run_job
from bench.process_stats import child_processes, rss_bytes, uss_bytes
from bench.zk_side import Observer, close_kazoo, kazoo_client
from testkit.bench_specs import tiny_spec
from zootrain.paths import Paths

GOAL_RSS = 150 * 1024 * 1024


def subtree(client: KazooClient, path: str) -> tuple[int, int]:
    """(znodes, data bytes) of ``path`` and everything under it."""
    stat = client.exists(path)
    if stat is None:
        return 0, 0
    nodes, size = 1, stat.dataLength
    for child in client.get_children(path):
        more_nodes, more_size = subtree(client, f"{path}/{child}")
        nodes += more_nodes
        size += more_size
    return nodes, size


def job_znodes(client: KazooClient, paths: Paths, job_id: str, key: str) -> tuple[int, int]:
    nodes, size = subtree(client, paths.job(job_id))
    extra = [
        paths.queue_entry(name)
        for name in client.get_children(paths.queue)
        if f"-{job_id}-" in name
    ]
    # Keys are scoped to the token that submitted (zootrain.queue.JobQueue.submit).
    scoped = f"{TOKEN_NAME}\0{key}"
    extra.append(paths.idempotency_key(hashlib.sha256(scoped.encode()).hexdigest()))
    job = json.loads(client.get(paths.job(job_id))[0])
    if job.get("model"):
        extra.append(paths.version(job["model"]["name"], job["model"]["version"]))
    for path in extra:
        stat = client.exists(path)
        if stat is not None:
            nodes += 1
            size += stat.dataLength
    return nodes, size


def bare_interpreter_rss() -> float | None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import time

        time.sleep(1.0)
        return rss_bytes(process.pid)
    finally:
        process.kill()
        process.wait()


def coordinating(name: str) -> bool:
    """The processes that never import scikit-learn: the job service and the worker."""
    return name.startswith(("job service", "worker, idle"))


async def run(ctx: Context) -> list[Figure]:
    command = ctx.command("footprint")
    loop = asyncio.get_running_loop()
    spec = tiny_spec("bench-footprint", shards=4)
    body = len(json.dumps(spec).encode())
    key = f"bench-{uuid.uuid4().hex}"
    with ctx.zookeeper("footprint") as zk, ctx.stack("footprint", zk) as stack:
        api = stack.start_api_server()
        client = kazoo_client(zk.hosts)
        observer = await Observer(zk.hosts).start()
        try:
            async with api_client(stack.url) as http:
                response = await http.post("/v1/jobs", json=spec, headers={"Idempotency-Key": key})
                response.raise_for_status()
                job_id = response.json()["id"]
                queued = await loop.run_in_executor(
                    None, job_znodes, client, stack.paths, job_id, key
                )
                stack.start_worker("worker")
                recover = restarter(ctx, stack, "footprint")
                await observer.wait_until(
                    stack.paths.job(job_id), lambda r: r["state"] in ("succeeded", "failed")
                )
                published = await loop.run_in_executor(
                    None, job_znodes, client, stack.paths, job_id, key
                )
                for _ in range(3 if ctx.quick else 10):  # warm both services up
                    await asyncio.wait_for(
                        run_job(http, observer, stack.paths, spec, stall=30.0, recover=recover),
                        300,
                    )
                    await http.get(f"/v1/jobs/{job_id}")
                await asyncio.sleep(2.0)  # idle
                processes = [("job service (uvicorn, 1 process)", api.popen.pid)]
                worker = stack.workers()[0]
                processes.append(("worker, idle", worker.popen.pid))
                for pid, cmdline in child_processes(worker.popen.pid):
                    if "forkserver" in cmdline:
                        processes.append(("worker's forkserver", pid))
                    elif "resource_tracker" in cmdline:
                        processes.append(("worker's resource tracker", pid))
                    else:
                        processes.append((f"worker child {pid}", pid))
                sizes = [(name, rss_bytes(pid), uss_bytes(pid)) for name, pid in processes]
        finally:
            await observer.stop()
            close_kazoo(client)
    bare = await loop.run_in_executor(None, bare_interpreter_rss)
    figures = [
        Figure(
            f"footprint: RSS, {name}",
            size,
            "B",
            baseline=bare,
            baseline_name="bare python",
            # The goal is the coordinating processes'. The forkserver and the training
            # children hold scikit-learn by design (zootrain/forkserver.py), the children
            # sharing the forkserver's pages copy-on-write: their USS is what they add.
            goal="≤ 150 MB" if coordinating(name) else "",
            met=(size is not None and size <= GOAL_RSS) if coordinating(name) else None,
            command=command,
            note="" if uss is None else f"USS {uss / 2**20:.0f} MB",
        )
        for name, size, uss in sizes
    ]
    for label, (nodes, size) in (("queued", queued), ("published", published)):
        figures.append(
            Figure(
                f"footprint: znodes per job, {label} (4 shards, Idempotency-Key)",
                nodes,
                "znodes",
                command=command,
            )
        )
        figures.append(
            Figure(
                f"footprint: ZooKeeper data bytes per job, {label}",
                size,
                "B",
                baseline=body,
                baseline_name="request body",
                command=command,
            )
        )
    return figures
