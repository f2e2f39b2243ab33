"""Many books: one job per book, run in this process (`local`) or spread over a Ray cluster (`ray`).

A job is the whole pipeline for one book, writing into its own output folder; every stage is cached there
(collab.pipeline), so a job that is retried, here or on another worker, resumes where the last attempt
stopped and the outputs are the same as a single-process run's. Ray retries a job whose worker died
(`RETRIES` times); a book that fails on its own merits (BookError, DataError) is reported, not retried.

Ray: `ray_address` None starts a local instance on this machine's cores; an address joins a cluster, whose
workers need collab installed and the output folder on a filesystem they share with the driver. Usage
statistics are off. Each task runs the scorer on one thread, so a worker per core does not oversubscribe.
A book's relation stage is split further: its pair sentences go out as tasks of `ray_pairs_per_task`, so
one long book also spreads over the cluster (a book task waiting on them gives its CPU back meanwhile).
Each worker loads the guide once (collab.api caches it per process).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..config import Config
from ..data import DataError
from .records import BookError
from .stages import book_slug

BACKENDS = ("local", "ray")
RETRIES = 3


@dataclass(frozen=True)
class BookJob:
    path: Path
    out: Path


def plan_jobs(paths: Iterable[Path], out: Path) -> list[BookJob]:
    """One job per book, each with its own folder; books with the same name get _2, _3, ..."""
    jobs, seen = [], {}
    for path in paths:
        slug = book_slug(path)
        seen[slug] = seen.get(slug, 0) + 1
        jobs.append(BookJob(path, out / (slug if seen[slug] == 1 else f"{slug}_{seen[slug]}")))
    return jobs


def run_job(job: BookJob, config: Config, aliases: dict | None, rerun_from: str | None,
            progress: bool = True, escalation: Any = None, pair_tasks: bool = False) -> dict[str, Any]:
    """{"summary": ...} for a finished book, {"failed": {book, error}} for a bad one. `pair_tasks`: inside
    a Ray task, classify the book's pair sentences in Ray tasks of their own."""
    from .. import api
    from ..schema import load_schema
    from .stages import BookRun, run_book

    schema = load_schema(config.schema)
    run = BookRun(job.path, config, schema, api.scorer_identity(config, schema),
                  lambda: api.scorer_for(config, schema), job.out, progress=progress, aliases=aliases,
                  escalation=escalation,
                  pair_predictor=ray_pair_predictions if pair_tasks and config.ray_pairs_per_task > 0 else None)
    try:
        return {"summary": run_book(run, rerun_from=rerun_from)}
    except (BookError, DataError) as e:
        return {"failed": {"book": str(job.path), "error": str(e)}}


def predict_pairs(config: Config, pairs: list) -> list:
    """One Ray task's share of a book: predictions for `pairs`, in order."""
    from .. import api
    from ..schema import load_schema

    schema = load_schema(config.schema)
    return list(api.scorer_for(config, schema).iter_predict(pairs, config.batch_size))


def ray_pair_predictions(config: Config, pairs: list) -> Iterator:
    """Predictions for a book's pairs from Ray tasks of `config.ray_pairs_per_task` pairs, as each finishes
    (the relation stage saves them as they come, so a driver that dies loses only the tasks in flight)."""
    import ray

    size = config.ray_pairs_per_task
    task = ray.remote(num_cpus=1, max_retries=RETRIES)(predict_pairs)
    pending = [task.remote(config, pairs[i:i + size]) for i in range(0, len(pairs), size)]
    while pending:
        finished, pending = ray.wait(pending, num_returns=1)
        yield from ray.get(finished[0])


def run_local(jobs: list[BookJob], config: Config, aliases: dict | None, rerun_from: str | None,
              escalation: Any = None) -> list[dict]:
    from tqdm import tqdm

    return [run_job(job, config, aliases, rerun_from, escalation=escalation)
            for job in tqdm(jobs, unit="book", disable=len(jobs) < 2, dynamic_ncols=True)]


def run_ray(jobs: list[BookJob], config: Config, aliases: dict | None, rerun_from: str | None,
            address: str | None) -> list[dict]:
    """The jobs as Ray tasks; results come back in the jobs' order."""
    try:
        import ray
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install 'collab[ray]'") from None
    from tqdm import tqdm

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    started_here = not ray.is_initialized()
    if started_here:
        # a local instance listens on loopback only: nothing outside the machine can join it or see it
        local = {"_node_ip_address": "127.0.0.1"} if address is None else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False, **local)
    try:
        task = ray.remote(num_cpus=1, max_retries=RETRIES)(run_job)
        one_thread = config.replace(threads=1)
        refs = [task.remote(job, one_thread, aliases, rerun_from, False, None, True) for job in jobs]
        pending, done = list(refs), {}
        with tqdm(total=len(refs), unit="book", disable=len(refs) < 2, dynamic_ncols=True) as bar:
            while pending:
                finished, pending = ray.wait(pending, num_returns=1)
                done[finished[0]] = ray.get(finished[0])
                bar.update(1)
        return [done[ref] for ref in refs]
    finally:
        if started_here:
            ray.shutdown()


def run_books(jobs: list[BookJob], config: Config, aliases: dict | None, rerun_from: str | None,
              escalation: Any = None) -> list[dict]:
    """Every book, locally or on Ray; `escalation` (a collab.predict.EscalationSession) runs locally only."""
    if config.backend == "ray":
        from ..privacy import check_ray_address

        if escalation is not None:
            raise ValueError("books --escalate runs on the local backend for now: drop --backend ray")
        check_ray_address(config.ray_address, config.privacy)
        return run_ray(jobs, config, aliases, rerun_from, config.ray_address)
    return run_local(jobs, config, aliases, rerun_from, escalation)
