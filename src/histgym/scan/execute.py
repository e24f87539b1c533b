"""Scan layer: running a scan's tasks in this process, in local processes, or on Ray.

A task is ``("main", i)`` (point ``i``'s asymptotic numbers) or ``("toy", i, j)`` (toy chunk
``j`` of point ``i``).  Every worker holds one :class:`Context`: the background compiled
once (:class:`histgym.patchset.Background`), the patches and the settings; it builds a
point's model incrementally from the background and keeps the last one for the point's
other tasks.

- Local: ``jobs`` processes forked from this one (they inherit the compiled background and
  the compiled kernels; numba runs one thread per worker), fed one task at a time as they
  finish (work stealing through the pool's shared queue).
- Ray (``pip install "histgym[ray]"``): one remote task per scan task, retried when a worker
  dies (``max_retries``); the context travels once through the object store and is compiled
  once per worker process; results are collected as they finish (``ray.wait``).
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ..errors import MissingExtra
from ..patchset import Background, Patch
from .points import Settings, main_task, toy_chunk

__all__ = ["Context", "Task", "run_inline", "run_local", "run_ray", "require_ray"]

Task = tuple[Any, ...]
OnResult = Callable[[Task, dict[str, Any]], None]


def require_ray() -> Any:
    """Import ray, or raise a one-line error naming the extra."""
    try:
        import ray
    except ImportError:
        raise MissingExtra('Ray is not installed: pip install "histgym[ray]"') from None
    return ray


@dataclass
class Context:
    """Everything a worker needs: the compiled background, the patches, the settings."""

    background: Background
    patches: list[Patch]
    settings: Settings
    fault: dict[str, Any] | None = None  # testing aid: {"patch": name, "marker": path}
    _last: tuple[int, Any] | None = field(default=None, repr=False)

    def model(self, i: int) -> Any:
        if self._last is None or self._last[0] != i:
            self._last = (i, self.background.model(self.patches[i]))
        return self._last[1]

    def run(self, task: Task) -> dict[str, Any]:
        """Run one task; an exception becomes ``{"error": message}`` (the scan goes on)."""
        i = task[1]
        if self.fault is not None and self.patches[i].name == self.fault["patch"]:
            marker = self.fault["marker"]
            if not os.path.exists(marker):  # die once, as a killed worker would
                open(marker, "w").close()
                os._exit(17)
        try:
            model = self.model(i)
            if task[0] == "main":
                return main_task(model, self.settings)
            return toy_chunk(model, self.settings, self.patches[i].name, task[2])
        except Exception as err:  # noqa: BLE001 - reported per point, the scan goes on
            return {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc(limit=3)}


def run_inline(ctx: Context, tasks: Iterable[Task], on_result: OnResult) -> None:
    """Run the tasks one after the other in this process."""
    for t in tasks:
        on_result(t, ctx.run(t))


_CTX: Context | None = None


def _payload(ctx: Context) -> dict[str, Any]:
    """What a fresh process needs to rebuild ``ctx`` (plain data: the workspace, patches)."""
    bkg = ctx.background
    return {
        "workspace": bkg.spec,
        "measurement": bkg.measurement_name,
        "modifier_settings": bkg.modifier_settings,
        "patches": ctx.patches,
        "settings": ctx.settings,
        "fault": ctx.fault,
    }


def _context(payload: dict[str, Any]) -> Context:
    bkg = Background(payload["workspace"], measurement=payload["measurement"], modifier_settings=payload["modifier_settings"])
    return Context(bkg, payload["patches"], payload["settings"], payload.get("fault"))


def _init_worker(payload: dict[str, Any] | None = None) -> None:
    global _CTX
    try:
        import numba

        numba.set_num_threads(1)  # the processes are the parallelism
    except Exception:  # pragma: no cover - numba without threading layer
        pass
    if payload is not None:  # spawned: compile the background once in this worker
        _CTX = _context(payload)


def _run_forked(task: Task) -> dict[str, Any]:
    assert _CTX is not None
    return _CTX.run(task)


def _fork_safe() -> bool:
    """Forking is safe unless numba already started OpenMP/TBB threads in this process."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    try:
        import numba

        return bool(numba.threading_layer() == "workqueue")
    except ValueError:  # no parallel kernel has run yet: no threads to inherit
        return True


def run_local(ctx: Context, tasks: Sequence[Task], on_result: OnResult, jobs: int) -> None:
    """Run the tasks in ``jobs`` local processes (``jobs=1``: in this process).

    The processes are forked (inheriting the compiled background and kernels) unless numba's
    OpenMP/TBB threads already run here (forking those is unsafe): then they are spawned
    and each compiles the background once.
    """
    global _CTX
    if jobs <= 1 or len(tasks) <= 1:
        run_inline(ctx, tasks, on_result)
        return
    it = iter(tasks)
    if _fork_safe():
        mp = multiprocessing.get_context("fork")
        initargs: tuple[Any, ...] = ()
        first = next(it)
        if first[0] == "main":  # asymptotics use serial kernels: warm them up here, then fork
            on_result(first, ctx.run(first))
        else:  # pragma: no cover - tasks start with a point's main task
            it = iter(tasks)
        _CTX = ctx
    else:
        mp = multiprocessing.get_context("spawn")
        initargs = (_payload(ctx),)
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp, initializer=_init_worker, initargs=initargs) as ex:
            pending = {}
            for t in it:  # keep the queue short: a few tasks per worker in flight
                pending[ex.submit(_run_forked, t)] = t
                if len(pending) >= 2 * jobs:
                    break
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        t = pending.pop(f)
                        on_result(t, f.result())
                        nxt = next(it, None)
                        if nxt is not None:
                            pending[ex.submit(_run_forked, nxt)] = nxt
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
    finally:
        _CTX = None


# ---------------------------------------------------------------- Ray
_RAY_CACHE: dict[str, Context] = {}


def _ray_run(token: str, boxed: list[Any], task: Task) -> dict[str, Any]:
    """Body of the remote task: build (once per worker) the context, run the task."""
    ctx = _RAY_CACHE.get(token)
    if ctx is None:
        import ray

        ctx = _context(ray.get(boxed[0]))
        _RAY_CACHE.clear()
        _RAY_CACHE[token] = ctx
        try:
            import numba

            numba.set_num_threads(1)
        except Exception:  # pragma: no cover
            pass
    return ctx.run(task)


def run_ray(
    ctx: Context,
    tasks: Sequence[Task],
    on_result: OnResult,
    *,
    address: str | None = None,
    max_retries: int = 3,
) -> None:
    """Run the tasks as Ray tasks (see the module docstring).

    Args:
        address: ``None`` uses the running Ray (or starts a local one); ``"auto"`` joins the
            cluster of this machine; ``"ray://host:10001"`` or ``"host:6379"`` a remote one.
        max_retries: retries of a task whose worker died.
    """
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(max_retries=max_retries, num_cpus=1)(_ray_run)
    payload = _payload(ctx)
    ref = ray.put(payload)
    token = uuid.uuid4().hex
    window = max(4, 2 * int(ray.cluster_resources().get("CPU", 2)))
    it = iter(tasks)
    pending: dict[Any, Task] = {}

    def submit() -> bool:
        t = next(it, None)
        if t is None:
            return False
        pending[remote.remote(token, [ref], t)] = t
        return True

    for _ in range(window):
        if not submit():
            break
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for r in ready:
                t = pending.pop(r)
                on_result(t, ray.get(r))
                submit()
    except BaseException:
        for r in pending:
            ray.cancel(r, force=True)
        raise
