"""Run a stage's pending shards in this process or on a Ray cluster (``--executor ray``).

A stage cuts its work into fixed shards (``llmcse.utils.shards``: manifest + one file per shard,
complete or absent). This module only decides *where* each shard runs:

* ``local``: one worker in this process, shard after shard.
* ``ray``: Ray Data ``map_batches`` over the pending shards with a pool of actors
  (``ActorPoolStrategy(size=actors)``). Each actor builds its worker once (loads the model once),
  then takes one shard at a time; the worker writes the shard file itself, so a finished shard
  survives a lost driver and a rerun skips it. Ray retries the shards of a node that dies.

A worker is built by a picklable zero-argument ``factory`` (a top-level class or a
``functools.partial`` of one) and called as ``worker(task) -> dict | None`` for each task
(``{"index": i, ...}``, everything picklable); the dict it returns is added to the shard's
provenance row (node, host, pid, seconds), which the driver appends to ``provenance_file``.

Actors are sized so a small machine cannot deadlock: Ray Data's own tasks need CPU too, and a pool
of 1-CPU actors on a 2-CPU machine never got its input scheduled (tried here with Ray 2.60). Each
actor asks for 3/4 of its share of the cluster's CPUs (``plan_actors``), and one GPU where the
cluster has GPUs and the stage's model can use one.

Ray is optional (``pip install "llmcse[ray]"``) and imported only here, only when used.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import math
import os
import pickle
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from llmcse.errors import LlmcseError

logger = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
INSTALL_RAY = 'pip install "llmcse[ray]"'
ACTOR_START_TIMEOUT = 900  # seconds for the whole actor pool to start (each actor loads a model)
CPU_SHARE = 0.75  # of its share of the cluster's CPUs an actor asks for: the rest stays free for Ray Data's tasks

_connected: dict[str, Any] = {}  # {"address": what ray.init was given} while this process holds a Ray connection


@functools.lru_cache(maxsize=None)
def is_ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def require_ray(what: str = "--executor ray") -> None:
    """Raise the one-line install hint when Ray is missing."""
    if not is_ray_available():
        raise LlmcseError(f"{what} needs Ray, which is not installed: {INSTALL_RAY}")


def check_executor(executor: str, actors: int = 1, ray_address: str | None = None, need_ray: bool = True) -> None:
    """Validate the three settings (before anything loads); ``ray`` also needs Ray installed (``need_ray``)."""
    if executor not in EXECUTORS:
        raise LlmcseError(f"unknown executor {executor!r}; choose one of {list(EXECUTORS)}")
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise LlmcseError(f"actors must be an integer >= 1, got {actors!r}")
    if executor == "local" and (actors != 1 or ray_address):
        given = "--actors" if actors != 1 else "--ray-address"
        raise LlmcseError(f"{given} works with --executor ray (the local executor runs one process)")
    if executor == "ray" and need_ray:
        require_ray()


_scope: contextvars.ContextVar[dict | None] = contextvars.ContextVar("llmcse_executor", default=None)


@contextlib.contextmanager
def using(executor: str = "local", ray_address: str | None = None, actors: int = 1, origin: str = "--executor ray"):
    """Stages run inside this block use these settings unless a call names its own (the CLI wraps a
    stage command in it; a recipe runner wraps its stages for ``[run] executor = "ray"``).

    Whether Ray is installed is checked when a stage asks (``resolve``), after the stage has checked
    its own inputs; ``origin`` names the setting in that error."""
    check_executor(executor, actors, ray_address, need_ray=False)
    token = _scope.set({"executor": executor, "ray_address": ray_address, "actors": actors, "origin": origin})
    try:
        yield
    finally:
        _scope.reset(token)


def resolve(executor: str | None = None, ray_address: str | None = None,
            actors: int | None = None) -> tuple[str, str | None, int]:
    """(executor, ray_address, actors): each argument given wins, else the ``using`` scope's, else local."""
    scope = _scope.get() or {}
    executor = executor or scope.get("executor") or "local"
    ray_address = ray_address if ray_address is not None else scope.get("ray_address")
    actors = actors if actors is not None else scope.get("actors") or 1
    if executor == "local":  # a scope's Ray settings do not apply to a call that asks for local
        ray_address, actors = None, 1
    check_executor(executor, actors, ray_address, need_ray=False)
    if executor == "ray" and not is_ray_available():
        origin = scope.get("origin", "--executor ray") if scope.get("executor") == "ray" else "executor='ray'"
        if origin == "--workers":
            raise LlmcseError(f"--workers runs Ray actors on this machine and needs Ray: {INSTALL_RAY} (without Ray: "
                              "run the command with --shard K/N in N terminals, then once without --shard)")
        require_ray(origin)
    return executor, ray_address, actors


def add_executor_options(parser, recipe: bool = False) -> None:
    """``--executor``, ``--ray-address``, ``--actors`` for a stage command that cuts its work into shards;
    ``recipe``: for ``llmcse run``, where they default to unset and override the recipe's ``[run]`` values."""
    from llmcse.utils.validate import positive_int

    title = "scale-out on Ray (pip install \"llmcse[ray]\")"
    group = parser.add_argument_group(title + (": overrides [run] executor, actors, ray_address; train and eval "
                                               "run in this process either way" if recipe else ""))
    group.add_argument("--executor", choices=EXECUTORS, default=None if recipe else "local",
                       help="local: this process (default); ray: a pool of Ray actors, each loading the model once "
                            "(one GPU each where the cluster has GPUs); finished shards survive a crash")
    group.add_argument("--ray-address", metavar="ADDRESS",
                       help="with --executor ray: auto (the cluster `ray start` runs on this machine), host:port or "
                            "ray://host:10001 (default: $RAY_ADDRESS, else a new Ray instance on this machine)")
    group.add_argument("--actors", type=positive_int, default=None if recipe else 1,
                       help="with --executor ray: actors in the pool (an openai: server's --concurrency is shared "
                            "among them)")


def options_from_args(args) -> dict:
    """The ``using(...)`` settings of parsed flags; ``--workers N`` (where a command has it) is
    ``--executor ray --actors N`` on this machine."""
    executor, ray_address, actors = args.executor, args.ray_address, args.actors
    workers = getattr(args, "workers", 1) or 1
    if workers > 1:
        if executor == "ray" or actors != 1:
            raise LlmcseError(f"--workers {workers} means --executor ray --actors {workers}; give one or the other")
        logger.info("--workers %d: %d Ray actors on this machine (--executor ray --actors %d)", workers, workers, workers)
        executor, actors = "ray", workers
    if executor == "ray" and getattr(args, "shard", None):
        raise LlmcseError("--shard K/N is for processes started by hand; with --executor ray, Ray shares out the shards")
    check_executor(executor, actors, ray_address, need_ray=False)
    return {"executor": executor, "ray_address": ray_address, "actors": actors,
            "origin": "--workers" if workers > 1 else "--executor ray"}


def split_concurrency(total: int, actors: int) -> int:
    """Requests in flight per actor so that all actors together keep to ``total`` (a server's limit)."""
    per_actor = max(1, total // actors)
    if total < actors:
        logger.warning("%d actors share a concurrency of %d: each keeps 1 request in flight (%d in all)",
                       actors, total, actors)
    return per_actor


@dataclass(frozen=True)
class Placement:
    """What each of ``actors`` actors asks Ray for, and the CPU threads its model may use."""

    actors: int
    num_cpus: float
    num_gpus: float
    threads: int


def plan_actors(node_cpus: list[float], gpus: float, actors: int, uses_gpu: bool,
                threads: int | None = None) -> Placement:
    """Size the actor pool for a cluster whose alive nodes have ``node_cpus`` CPUs and ``gpus`` GPUs in all.

    Each actor asks for ``CPU_SHARE`` of its share of the CPUs (never more than the biggest node's),
    shrunk until every actor fits on some node. With GPUs (and a stage that uses them) each actor
    takes one GPU, and there are at most as many actors as GPUs. ``threads``: the CPU threads per
    actor ($OMP_NUM_THREADS when set), else its CPU share rounded down (at least 1).
    """
    if uses_gpu and gpus >= 1:
        if actors > int(gpus):
            logger.warning("%d actors asked for, but the cluster has %d GPUs: using %d actors, one GPU each",
                           actors, int(gpus), int(gpus))
        actors = min(actors, int(gpus))
    total = sum(node_cpus)
    if total <= 0:
        raise LlmcseError("the Ray cluster has no CPUs; start the nodes with --num-cpus >= 1")
    share = min(total / actors, max(node_cpus))
    num_cpus = round(CPU_SHARE * share, 3)
    while sum(math.floor(c / num_cpus + 1e-9) for c in node_cpus) < actors and num_cpus > 0.01:
        num_cpus = round(num_cpus * 0.8, 3)  # heterogeneous nodes: shrink until every actor has a place
    return Placement(actors=actors, num_cpus=max(num_cpus, 0.01), num_gpus=1.0 if uses_gpu and gpus >= 1 else 0.0,
                     threads=threads or max(1, math.floor(share)))


def run_shards(factory: Callable[[], Callable[[dict], dict | None]], tasks: list[dict], *, executor: str = "local",
               ray_address: str | None = None, actors: int = 1, uses_gpu: bool = False,
               provenance_file: str | Path | None = None, show_progress_bar: bool | None = None,
               desc: str = "shards") -> list[dict]:
    """Run ``factory()(task)`` for every task; return one provenance row per task, in finishing order.

    Args:
        factory: Picklable; builds the worker (loads the model) once per actor, or once here.
        tasks: ``{"index": shard index, ...}``; the worker writes the shard's file itself.
        executor: ``local`` (this process) or ``ray``.
        ray_address: ``None``: start Ray on this machine (or join ``$RAY_ADDRESS``); ``auto``: the
            cluster ``ray start`` runs here; ``host:port`` or ``ray://host:10001``: that cluster.
        actors: Size of the Ray actor pool.
        uses_gpu: The worker's model can use a GPU (one per actor where the cluster has GPUs).
        provenance_file: Each finished shard's row is appended here as it arrives (JSONL).

    Raises:
        LlmcseError: A worker raised one (its message, naming the shard); finished shards are kept.
    """
    from llmcse.utils.progress import progress_enabled

    check_executor(executor, actors if executor == "ray" else 1, ray_address if executor == "ray" else None)
    rows: list[dict] = []
    if not tasks:
        return rows
    from tqdm.auto import tqdm

    from llmcse.utils.jsonl import AppendOnlyJsonl

    record = AppendOnlyJsonl(provenance_file) if provenance_file else None
    bar = tqdm(total=len(tasks), unit="shard", desc=desc, disable=not progress_enabled(show_progress_bar))

    def done(row: dict) -> None:
        if "error" in row:
            raise LlmcseError(f"{desc}: shard {row['index']} failed on {row['host']} (pid {row['pid']}): "
                              f"{row['error']}; finished shards are kept, rerun to continue")
        rows.append(row)
        if record:
            record.append([row])
        bar.update(1)
        logger.debug("shard %d done on %s pid %d in %.1f s", row["index"], row["host"], row["pid"], row["seconds"])

    try:
        if executor == "local":
            worker = _Shards(factory, executor="local")
            for task in tasks:
                for row in worker.run([task]):
                    done(row)
        else:
            _run_on_ray(factory, tasks, ray_address, actors, uses_gpu, done)
    finally:
        bar.close()
    return rows


class _Shards:
    """The worker of one actor (or of this process) plus who it is, for the provenance rows."""

    def __init__(self, factory, executor: str, threads: int | None = None, log_level: int | None = None):
        if log_level is not None:  # an actor's own process: log as the driver does
            logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
            logging.getLogger("llmcse").setLevel(log_level)
            if log_level > logging.DEBUG:  # as the CLI: third-party chatter and weight-loading bars off
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                for noisy in ("sentence_transformers", "transformers", "httpx"):
                    logging.getLogger(noisy).setLevel(logging.WARNING)
        if threads:
            _set_threads(threads)
        self.where = {"executor": executor, "node": _node_id(executor), "host": socket.gethostname(), "pid": os.getpid()}
        self.error = None
        self.catch = executor == "ray"  # here, a user error propagates as it is (its type and message)
        try:
            self.worker = factory()  # the model loads here, once
        except LlmcseError as e:  # on Ray: reported with the first shard (Ray would restart a failing actor forever)
            if not self.catch:
                raise
            self.error = str(e)

    def run(self, tasks: list[dict]) -> list[dict]:
        rows = []
        for task in tasks:
            started = time.time()
            row = {"index": task["index"], **self.where}
            if self.error is None:
                try:
                    row.update(self.worker(task) or {})
                except LlmcseError as e:
                    if not self.catch:
                        raise
                    row["error"] = str(e)
            else:
                row["error"] = self.error
            row.update(started=round(started, 3), seconds=round(time.time() - started, 3))
            rows.append(row)
        return rows


class _RayActor:
    """``map_batches`` callable class: a batch holds pickled tasks, the result their provenance as JSON."""

    def __init__(self, factory, threads: int, log_level: int):
        self.shards = _Shards(factory, executor="ray", threads=threads, log_level=log_level)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        rows = self.shards.run([pickle.loads(blob) for blob in batch["task"]])
        return {"provenance": np.array([json.dumps(r) for r in rows], dtype=object)}


def _set_threads(threads: int) -> None:
    """CPU threads for the model: torch reads $OMP_NUM_THREADS when it is imported (a fake or HTTP
    back end never imports it, and need not pay for that here)."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


def _node_id(executor: str) -> str:
    if executor != "ray":
        return "local"
    import ray

    return ray.get_runtime_context().get_node_id()


def connect(ray_address: str | None = None):
    """``ray``, initialised: joined to ``ray_address`` (see ``run_shards``), or a new local instance.

    The connection stays open for later calls in this process (starting Ray takes seconds);
    ``shutdown()`` closes it. A local instance lives as long as the thread that started it (Ray's
    processes die with their parent thread), so start it from the main thread.
    """
    require_ray()
    import ray

    if ray.is_initialized():
        if _connected and _connected.get("address") != ray_address:
            shutdown()
        else:
            return ray  # ours, or one the caller started: used as it is
    quiet = logging.getLogger("llmcse").getEffectiveLevel() > logging.DEBUG
    options = {"logging_level": logging.WARNING if quiet else logging.INFO}
    if ray_address is None and not os.environ.get("RAY_ADDRESS"):
        logger.info("starting Ray on this machine (a cluster: --ray-address auto or host:port)")
        if threading.current_thread() is not threading.main_thread():
            logger.warning("Ray is started from a thread other than the main one: its processes stop when "
                           "this thread ends")
        options["include_dashboard"] = False  # a one-job instance: no web UI, one port fewer
    else:
        logger.info("joining the Ray cluster at %s", ray_address or os.environ["RAY_ADDRESS"])
    try:
        ray.init(address=ray_address, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = ray_address or os.environ.get("RAY_ADDRESS") or "a new local instance"
        raise LlmcseError(f"could not start or join Ray ({where}): {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                          "; is `ray start` running there, and do this machine and the cluster share the auth "
                          "token (RAY_AUTH_TOKEN or ~/.ray/auth_token)?") from None
    _connected["address"] = ray_address
    return ray


def shutdown() -> None:
    """Close the Ray connection this module opened (a local instance stops with it)."""
    if not _connected:
        return
    import ray

    _connected.clear()
    if ray.is_initialized():
        ray.shutdown()


def cluster_shape(ray) -> tuple[list[float], float]:
    """(CPUs of each alive node, GPUs in all)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return [float(n["Resources"].get("CPU", 0)) for n in nodes], float(sum(n["Resources"].get("GPU", 0) for n in nodes))


def _run_on_ray(factory, tasks: list[dict], ray_address: str | None, actors: int, uses_gpu: bool, done) -> None:
    ray = connect(ray_address)
    import ray.data

    node_cpus, gpus = cluster_shape(ray)
    env_threads = os.environ.get("OMP_NUM_THREADS", "")
    placement = plan_actors(node_cpus, gpus, actors, uses_gpu, int(env_threads) if env_threads.isdigit() else None)
    logger.info("%d shard(s) on Ray: %d actor(s), %.2f CPU%s and %d thread(s) each; cluster: %d node(s), %g CPUs, %g GPUs",
                len(tasks), placement.actors, placement.num_cpus,
                f" + {placement.num_gpus:g} GPU" if placement.num_gpus else "", placement.threads, len(node_cpus),
                sum(node_cpus), gpus)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # our own bar counts shards
    # Start the whole pool (every model loaded) before the first shard goes out: else the first actor
    # ready takes every shard of a short job, and a pool the cluster cannot place fails here, with
    # a reason, instead of waiting forever.
    context.wait_for_min_actors_s = ACTOR_START_TIMEOUT
    if logging.getLogger("llmcse").getEffectiveLevel() > logging.DEBUG:
        # "Starting execution of Dataset ...", "Progress bars disabled": per call, and nothing to act on
        # (a failing shard raises); set after `import ray.data`, which configures its loggers
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    items = [{"index": t["index"], "task": pickle.dumps(t)} for t in tasks]
    dataset = ray.data.from_items(items).map_batches(
        _RayActor, batch_size=1, batch_format="numpy",
        # one shard in flight per actor: shards go to whichever actor is free (a second queued behind a
        # long shard would wait while another actor idles)
        compute=ray.data.ActorPoolStrategy(size=placement.actors, max_tasks_in_flight_per_actor=1),
        num_cpus=placement.num_cpus, num_gpus=placement.num_gpus or None,
        fn_constructor_args=(factory, placement.threads, logging.getLogger("llmcse").getEffectiveLevel()))
    try:
        for row in dataset.iter_rows():
            done(json.loads(row["provenance"]))
    except ray.exceptions.GetTimeoutError:
        raise LlmcseError(f"the {placement.actors} Ray actor(s) did not start within {ACTOR_START_TIMEOUT} s; each "
                          f"asks for {placement.num_cpus:g} CPU" + (f" and {placement.num_gpus:g} GPU" if placement.num_gpus
                                                                     else "")
                          + " and loads the model: check `ray status` and the nodes' logs; finished shards are kept, "
                          "rerun to continue") from None


def require_shared_folder(folder: str | Path) -> None:
    """In a worker: fail with the reason when this node does not see the output folder (rather than
    writing a shard where no other node, nor the driver, will ever look)."""
    if not Path(folder).is_dir():
        raise LlmcseError(f"{folder}: not found on this node ({socket.gethostname()}); with --executor ray the "
                          "output must be on storage that every node sees at the same path (NFS, a shared volume)")


def read_provenance(path: str | Path) -> list[dict]:
    """The provenance rows written by ``run_shards`` (none when the file is missing)."""
    from llmcse.utils.jsonl import read_jsonl

    return read_jsonl(Path(path))
