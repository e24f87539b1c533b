"""histgym.scan on Ray (a local Ray started here: ray.init(num_cpus=2)): the same table as
local processes, toys independent of the workers, a killed worker neither loses nor
duplicates a point (Ray retries its task)."""

from __future__ import annotations

import json
import warnings

import pytest

from histgym.scan import scan

ray = pytest.importorskip("ray")

FIELDS = ("patch", "values", "cls_obs", "cls_exp", "limit_obs", "limit_exp", "z0", "z0_exp", "fit_ok", "error")


def table(rows):
    return [json.loads(json.dumps({k: r[k] for k in FIELDS}).replace("NaN", "null")) for r in rows]


@pytest.fixture(scope="module")
def local_ray():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_equals_local_and_survives_a_killed_worker(small_grid, tmp_path, local_ray):
    bkg, ps = small_grid
    local = scan(bkg, ps, jobs=1)
    marker = tmp_path / "worker_died"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_ray = scan(bkg, ps, ray=True, out=tmp_path / "r.json", _fault={"patch": "signal_400_0", "marker": str(marker)})
    assert marker.exists()  # a worker died (os._exit) in the middle of that point ...
    assert table(on_ray) == table(local)  # ... and every point is there exactly once
    assert [r["patch"] for r in json.loads((tmp_path / "r.json").read_text())] == [r["patch"] for r in local]


@pytest.mark.slow
def test_ray_toys_equal_local_toys(small_grid, local_ray):
    bkg, ps = small_grid
    kw = dict(what="cls", calctype="toybased", ntoys=300, seed=11, patches=["signal_200_100", "signal_600_0"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert table(scan(bkg, ps, ray=True, **kw)) == table(scan(bkg, ps, jobs=1, **kw))
