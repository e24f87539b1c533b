"""The catalogue of bad input (issue 10): every entry names the exact error type and a message
that names the offending thing (JSON path, channel/sample/parameter/option, file), through
the Python API, the environments and the command line.

Each table row is ``(id, build the bad input, expected exception type, regex on the message)``.
The CLI rows check exit code 2, a one-line message on stderr and no traceback.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import histgym
from histgym import cli, infer
from histgym.errors import (
    HistgymError,
    InvalidData,
    InvalidOption,
    InvalidOptionType,
    InvalidParameters,
    ResetNeeded,
    UnknownName,
    WorkspaceError,
    WorkspaceTypeError,
)

WS = histgym.example_workspace()


def ws_with(edit: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """A deep copy of the example workspace after ``edit(ws)``."""
    ws = copy.deepcopy(WS)
    edit(ws)
    return ws


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit setting the JSON path ``a.b[0].c`` (our path syntax) to ``value``."""
    import re

    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]

    def edit(ws: dict[str, Any]) -> None:
        obj = ws
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value

    return edit


SIG = "channels[0].samples[0]"  # signal, normfactor mu
BKG = "channels[0].samples[1]"  # background, normsys bkg_norm
PARS = "measurements[0].config.parameters"


def _par(*entries: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return _set(PARS, list(entries))


# ----------------------------------------------------------------------------- workspaces (API)
# (id, spec edit, exception type, regex that must appear in the message)
SPEC_CASES = [
    # defect 1: observation bin count != channel bin count (out-of-bounds read before)
    ("obs-fewer-bins", _set("observations[0].data", [1.0] * 5), WorkspaceError,
     r"observation of channel 'SR' has 5 bins but the channel has 8.*observations\[0\]\.data"),
    ("obs-more-bins", _set("observations[0].data", [1.0] * 10), WorkspaceError,
     r"has 10 bins but the channel has 8"),
    ("obs-duplicate", lambda w: w["observations"].append(copy.deepcopy(w["observations"][0])),
     WorkspaceError, r"two observations for channel 'SR'.*observations\[1\]\.name"),
    ("obs-negative", _set("observations[0].data[3]", -2.0), WorkspaceError,
     r"negative count -2.0 in bin 3.*observations\[0\]\.data\[3\]"),
    ("obs-nan", _set("observations[0].data[0]", math.nan), WorkspaceError,
     r"non-finite count in bin 0: nan \(observations\[0\]\.data\[0\]\)"),
    # defect 5: invalid model numbers
    ("normsys-lo-zero", _set(f"{BKG}.modifiers[0].data.lo", 0.0), WorkspaceError,
     r"normsys modifier 'bkg_norm'.*lo = 0.0: normsys factors must be > 0.*modifiers\[0\]\.data\.lo"),
    ("normsys-lo-negative", _set(f"{BKG}.modifiers[0].data.lo", -0.5), WorkspaceError,
     r"lo = -0.5"),
    ("normsys-hi-nan", _set(f"{BKG}.modifiers[0].data.hi", math.nan), WorkspaceError,
     r"non-finite hi nan.*modifiers\[0\]\.data\.hi"),
    ("yield-nan", _set(f"{SIG}.data[1]", math.nan), WorkspaceError,
     r"sample 'signal' of channel 'SR' has a non-finite yield in bin 1: nan"),
    ("yield-inf", _set(f"{SIG}.data[2]", math.inf), WorkspaceError, r"yield in bin 2: inf"),
    ("yield-huge-int", _set(f"{SIG}.data[0]", 10**400), WorkspaceError,
     r"too large for a float64.*channels\[0\]\.samples\[0\]\.data\[0\]"),
    ("negative-bin-total", _set(f"{BKG}.data[4]", -50.0), WorkspaceError,
     r"bin 4 of channel 'SR' has a negative total nominal yield"),
    ("zero-expected-observed",
     lambda w: (_set(f"{SIG}.data[7]", 0.0)(w), _set(f"{BKG}.data[7]", 0.0)(w)),
     WorkspaceError, r"bin 7 of channel 'SR' has 3.84.* observed events but every sample predicts"),
    ("staterror-negative",
     lambda w: w["channels"][0]["samples"][1]["modifiers"].append(
         {"name": "stat", "type": "staterror", "data": [1.0] * 7 + [-1.0]}),
     WorkspaceError, r"staterror modifier 'stat'.*negative uncertainty -1.0 in bin 7"),
    ("histosys-wrong-length",
     lambda w: w["channels"][0]["samples"][1]["modifiers"].append(
         {"name": "shape", "type": "histosys", "data": {"hi_data": [1.0] * 3, "lo_data": [1.0] * 8}}),
     WorkspaceError, r"histosys modifier 'shape'.*3 values for 8 bins.*hi_data"),
    # measurement configuration
    ("init-nan", _par({"name": "mu", "inits": [math.nan]}), WorkspaceError,
     r"parameter 'mu' has a non-finite inits in entry 0: nan \(measurements\[0\]\.config\."
     r"parameters\[0\]\.inits\[0\]\)"),
    ("bounds-inverted", _par({"name": "mu", "bounds": [[5.0, 0.0]]}), WorkspaceError,
     r"parameter 'mu' has inverted bounds \[5.0, 0.0\]"),
    ("bounds-nan", _par({"name": "mu", "bounds": [[0.0, math.nan]]}), WorkspaceError,
     r"parameter 'mu' has a non-finite upper bound nan"),
    ("init-outside-bounds", _par({"name": "mu", "inits": [20.0]}), WorkspaceError,
     r"initial value 20.0 of parameter 'mu' is outside its bounds \[0.0, 10.0\]"),
    ("sigma-zero",
     lambda w: (w["channels"][0]["samples"][1]["modifiers"].append(
         {"name": "lumi", "type": "lumi", "data": None}),
         _par({"name": "lumi", "auxdata": [1.0], "sigmas": [0.0]})(w)),
     WorkspaceError, r"parameter 'lumi' has sigmas 0.0: must be > 0.*parameters\[0\]\.sigmas\[0\]"),
    ("lumi-without-config",
     lambda w: w["channels"][0]["samples"][1]["modifiers"].append(
         {"name": "lumi", "type": "lumi", "data": None}),
     WorkspaceError, r"lumi modifier 'lumi'.*needs a parameter configuration.*missing \['auxdata', 'sigmas', 'bounds', 'inits'\]"),
    ("duplicate-parameter-config",
     _par({"name": "mu", "bounds": [[0, 5]]}, {"name": "mu", "bounds": [[0, 6]]}),
     WorkspaceError, r"parameter 'mu' is configured twice"),
    # defect 10: duplicate names
    ("duplicate-channel", lambda w: w["channels"].append(copy.deepcopy(w["channels"][0])),
     WorkspaceError, r"channel 'SR' is defined twice.*channels\[1\]\.name"),
    ("duplicate-sample",
     lambda w: w["channels"][0]["samples"].append(copy.deepcopy(w["channels"][0]["samples"][1])),
     WorkspaceError, r"sample 'background' appears twice in channel 'SR'.*samples\[2\]\.name"),
    ("duplicate-modifier",
     lambda w: w["channels"][0]["samples"][1]["modifiers"].append(
         copy.deepcopy(w["channels"][0]["samples"][1]["modifiers"][0])),
     WorkspaceError, r"modifier 'bkg_norm' of type 'normsys' appears twice on sample 'background'"),
    ("duplicate-measurement",
     lambda w: w["measurements"].append(copy.deepcopy(w["measurements"][0])),
     WorkspaceError, r"measurement 'meas' is defined twice.*measurements\[1\]\.name"),
    # schema
    ("schema-missing-key", lambda w: w["channels"][0].pop("samples"), WorkspaceError,
     r"violates the pyhf schema"),
    ("schema-wrong-type", _set(f"{SIG}.data", "many"), WorkspaceError, r"violates the pyhf schema"),
]


@pytest.mark.parametrize(
    ("edit", "exc", "pattern"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES]
)
def test_bad_workspace_api(edit: Any, exc: type, pattern: str) -> None:
    with pytest.raises(exc, match=pattern) as info:
        histgym.from_pyhf(ws_with(edit))
    assert isinstance(info.value, HistgymError)


def test_unused_configuration_is_logged_not_dropped_silently(caplog: pytest.LogCaptureFixture) -> None:
    """pyhf accepts (and published likelihoods contain) observations of pruned channels and
    configurations of parameters that only a patch adds: logged with their JSON path."""
    import logging

    ws = ws_with(lambda w: (w["observations"].append({"name": "CR", "data": [1]}),
                            _par({"name": "mus", "bounds": [[0, 5]]})(w)))
    with caplog.at_level(logging.WARNING, logger="histgym"):
        model = histgym.from_pyhf(ws)
    text = caplog.text
    assert "observation 'CR' names no channel" in text and "observations[1]" in text
    assert "configures parameter 'mus', which is not a modifier" in text
    assert "measurements[0].config.parameters[0].name" in text and "Did you mean 'mu'" in text
    assert model.twice_nll(model.suggested_init()) == histgym.from_pyhf(WS).twice_nll(
        model.suggested_init())


def test_workspace_error_carries_the_json_path() -> None:
    with pytest.raises(WorkspaceError) as info:
        histgym.from_pyhf(ws_with(_set("observations[0].data", [1.0] * 5)))
    assert info.value.path == "observations[0].data"
    with pytest.raises(WorkspaceError) as info:
        histgym.from_pyhf(ws_with(_set(f"{BKG}.modifiers[0].data.lo", 0.0)))
    assert info.value.path == f"{BKG}.modifiers[0].data.lo"


# ----------------------------------------------------------------------------- the loader
def _files(tmp: Path) -> dict[str, tuple[Any, type, str]]:
    """Loader inputs: id -> (the argument, exception, regex); paths are named in messages."""
    good = json.dumps(WS)
    (tmp / "empty.json").write_text("")
    (tmp / "blank.json").write_text("  \n")
    (tmp / "trunc.json").write_text(good[: len(good) // 2])
    (tmp / "list.json").write_text("[1, 2]")
    (tmp / "latin1.json").write_bytes(good.replace("signal", "sign\xe4l").encode("latin-1"))
    (tmp / "dupkey.json").write_text(good.replace('"version"', '"channels": [], "version"', 1))
    (tmp / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp / "bigint.json").write_text(good.replace("22.068918280364816", "1" + "0" * 5000, 1))
    (tmp / "adir").mkdir()
    return {
        "missing-file": (tmp / "nope.json", WorkspaceError, r"nope\.json' is neither JSON text"),
        "directory": (tmp / "adir", WorkspaceError, r"adir' is a directory, not a JSON file"),
        "empty-file": (tmp / "empty.json", WorkspaceError, r"workspace file '.*empty\.json' is empty"),
        "blank-file": (tmp / "blank.json", WorkspaceError, r"blank\.json' is empty"),
        "truncated": (tmp / "trunc.json", WorkspaceError, r"trunc\.json' is not valid JSON: .* line 1"),
        "json-list-file": (tmp / "list.json", WorkspaceError, r"must be a JSON object, got a JSON list"),
        "json-list-text": ("[1, 2]", WorkspaceError, r"must be a JSON object, got a JSON list"),
        "bracket-text": ("[not json", WorkspaceError, r"the workspace text is not valid JSON"),
        "non-utf8": (tmp / "latin1.json", WorkspaceError,
                     r"latin1\.json' is not UTF-8 text \(byte 0xe4 at offset"),
        "duplicate-key": (tmp / "dupkey.json", WorkspaceError,
                          r"dupkey\.json' is ambiguous: duplicate key 'channels'"),
        "deep-nesting": (tmp / "deep.json", WorkspaceError, r"deep\.json' is nested too deeply"),
        "int-beyond-limit": (tmp / "bigint.json", WorkspaceError, r"bigint\.json' is not usable JSON"),
        "plain-text": ("hello", WorkspaceError, r"'hello' is neither JSON text"),
        "empty-string": ("", WorkspaceError, r"workspace is an empty string"),
        "nul-byte": ("ws\0.json", WorkspaceError, r"neither JSON text"),
        "bytes-bad": (b"\xff\xfe", WorkspaceError, r"bytes are not UTF-8"),
        "wrong-type": (42, WorkspaceTypeError, r"must be a dict, JSON text .* got an object of type int"),
        "none": (None, WorkspaceTypeError, r"got an object of type NoneType"),
    }


LOADER_IDS = [
    "missing-file", "directory", "empty-file", "blank-file", "truncated", "json-list-file",
    "json-list-text", "bracket-text", "non-utf8", "duplicate-key", "deep-nesting",
    "int-beyond-limit", "plain-text", "empty-string", "nul-byte", "bytes-bad", "wrong-type",
    "none",
]


@pytest.mark.parametrize("case", LOADER_IDS)
def test_loader_api_and_environment(case: str, tmp_path: Path) -> None:
    """One loader: ``from_pyhf`` and the environments raise the same error for each input."""
    from histgym.envs import make_histfactory_env

    arg, exc, pattern = _files(tmp_path)[case]
    with pytest.raises(exc, match=pattern):
        histgym.from_pyhf(arg)
    if arg is None:
        pattern = r"needs a workspace"
        exc = InvalidOptionType
    with pytest.raises(exc, match=pattern):
        make_histfactory_env(arg, channel="SR", sample="signal")


def test_loader_accepts_bytes_and_bom(tmp_path: Path) -> None:
    text = json.dumps(WS)
    p = tmp_path / "bom.json"
    p.write_bytes(b"\xef\xbb\xbf" + text.encode())
    ref = histgym.from_pyhf(WS).twice_nll(np.array([1.0, 0.0]))
    for arg in (text.encode(), p, str(p)):
        assert histgym.from_pyhf(arg).twice_nll(np.array([1.0, 0.0])) == ref


# ----------------------------------------------------------------------------- model / fit / infer
@pytest.fixture(scope="module")
def model() -> histgym.Model:
    return histgym.from_pyhf(WS)


def _api_cases(m: histgym.Model) -> list[tuple[str, Callable[[], Any], type, str]]:
    init = m.suggested_init()
    data = m.observed_data()
    fixed_poi = histgym.from_pyhf(ws_with(_par({"name": "mu", "fixed": True})))
    return [
        ("pars-short", lambda: m.twice_nll(init[:1]), InvalidParameters, r"shape \(1,\).*2 parameters"),
        ("pars-long", lambda: m.twice_nll(np.zeros(3)), InvalidParameters, r"expected shape \(2,\)"),
        ("pars-nan", lambda: m.twice_nll(np.array([np.nan, 1.0])), InvalidParameters, r"non-finite.*'mu'"),
        ("pars-str", lambda: m.twice_nll(["a", "b"]), InvalidParameters, r"pars must be an array of real numbers"),
        ("data-short", lambda: m.twice_nll(init, data[:5]), InvalidData, r"data has shape \(5,\).*expects \(9,\)"),
        ("data-main-only", lambda: m.twice_nll(init, data[:8]), InvalidData, r"the main bins only; append the 1 auxdata"),
        ("data-long", lambda: m.grad_nll(init, np.ones(20)), InvalidData, r"shape \(20,\)"),
        ("data-negative", lambda: m.twice_nll(init, -data), InvalidData, r"main bins >= 0"),
        ("data-complex", lambda: m.twice_nll(init, data + 1j), InvalidData, r"real numbers"),
        ("hessian-data-short", lambda: m.hessian_nll(init, data[:3]), InvalidData, r"shape \(3,\)"),
        ("expected-pars-short", lambda: m.expected_data(init[:1]), InvalidParameters, r"2 parameters"),
        ("batch-pars-cols", lambda: m.twice_nll_batch(np.zeros((4, 3))), InvalidParameters, r"\(N, 2\)"),
        ("batch-data-rows", lambda: m.twice_nll_batch(np.tile(init, (4, 1)), np.ones((3, 9))),
         InvalidData, r"must have shape \(4, 9\)"),
        ("yields-batch-rows", lambda: m.twice_nll_yields_batch("SR", "signal", np.ones((2, 8)), np.tile(init, (5, 1))),
         InvalidParameters, r"yields have 2 rows but pars 5"),
        ("yields-batch-bins", lambda: m.grad_nll_yields_batch("SR", "signal", np.ones((2, 7)), np.tile(init, (2, 1))),
         InvalidParameters, r"yields must have shape \(N, 8\)"),
        ("with-yields-shape", lambda: m.with_sample_yields("SR", "signal", np.ones(9)), InvalidParameters,
         r"yields for 'signal' in 'SR' must have shape \(8,\)"),
        ("with-yields-negative", lambda: m.with_sample_yields("SR", "signal", -np.ones(8)), InvalidParameters,
         r"must be finite and >= 0"),
        ("unknown-channel", lambda: m.samples("CR"), UnknownName, r"unknown channel 'CR'"),
        ("unknown-sample", lambda: m.sample_yields("SR", "signl"), UnknownName, r"Did you mean 'signal'"),
        ("model-observed-length", lambda: histgym.Model(m.config, m.spec, [1.0] * 5, m._compiled),
         InvalidData, r"observed data have shape \(5,\)"),
        ("model-fbuf-size", lambda: histgym.Model(m.config, m.spec, data, m._compiled, np.zeros(3)),
         InvalidParameters, r"fbuf must be a C-contiguous float64 array"),
        # fit.py
        ("fit-fixed-nan", lambda: histgym.fit(m, fixed={"mu": math.nan}), InvalidOption, r"fixed\['mu'\] must be a finite"),
        ("fit-fixed-unknown", lambda: histgym.fit(m, fixed={"muu": 1.0}), UnknownName, r"unknown parameter 'muu'.*Did you mean 'mu'"),
        ("fit-fixed-mask-float", lambda: histgym.fit(m, fixed=[0.5, 0.0]), InvalidParameters, r"bool mask"),
        ("fit-max-iter-float", lambda: histgym.fit(m, max_iter=2.7), InvalidOptionType, r"max_iter must be an integer"),
        ("fit-tol-zero", lambda: histgym.fit(m, tol=0.0), InvalidOption, r"tol must be > 0"),
        ("fit-warn-str", lambda: histgym.fit(m, warn="no"), InvalidOptionType, r"warn must be True or False"),
        ("fit-bounds-nan", lambda: histgym.fit(m, bounds=[[0, np.nan], [-5, 5]]), InvalidParameters, r"finite.*\['mu'\]"),
        ("fit-bounds-inverted", lambda: histgym.fit(m, bounds=[[0, 10], [5, -5]]), InvalidParameters, r"\['bkg_norm'\]"),
        ("fit-init-short", lambda: histgym.fit(m, init=[1.0]), InvalidParameters, r"init has shape \(1,\)"),
        ("fitresult-unknown", lambda: histgym.fit(m)["unknown"], UnknownName, r"unknown parameter 'unknown'"),
        ("fixed-poi-fit-nan", lambda: histgym.fixed_poi_fit(math.nan, m), InvalidParameters, r"poi_value must be a finite"),
        # infer
        ("hypotest-nan", lambda: infer.hypotest(math.nan, m), InvalidParameters, r"mu must be a finite number, got nan"),
        ("hypotest-inf", lambda: infer.hypotest(math.inf, m), InvalidParameters, r"mu must be a finite"),
        ("hypotest-str", lambda: infer.hypotest("1", m), InvalidOptionType, r"mu must be a real number"),
        ("qmu-tilde-nan", lambda: infer.qmu_tilde(math.nan, m), InvalidParameters, r"mu must be a finite"),
        ("tmu-inf", lambda: infer.tmu(-math.inf, m), InvalidParameters, r"mu must be a finite"),
        ("asimov-nan", lambda: infer.asimov_data(m, math.nan), InvalidParameters, r"poi_value must be a finite"),
        ("q0-data-short", lambda: infer.q0(m, data[:5]), InvalidData, r"shape \(5,\)"),
        ("q0-fixed-poi", lambda: infer.q0(fixed_poi), InvalidParameters, r"the POI 'mu' is fixed"),
        ("hypotest-test-stat", lambda: infer.hypotest(1.0, m, test_stat="qq"), UnknownName, r"unknown test_stat 'qq'"),
        ("hypotest-calctype", lambda: infer.hypotest(1.0, m, calctype="toys"), UnknownName, r"unknown calctype 'toys'"),
        ("limit-xtol-zero", lambda: infer.upper_limit(m, xtol=0), InvalidOption, r"xtol must be > 0"),
        ("limit-cl", lambda: infer.upper_limit(m, cl=1.5), InvalidOption, r"cl must be < 1"),
        ("limit-cl-nan", lambda: infer.upper_limit(m, cl=math.nan), InvalidOption, r"cl must be a finite"),
        ("limit-max-expand", lambda: infer.upper_limit(m, max_expand=-1), InvalidOption, r"max_expand must be an integer >= 0"),
        ("toys-seed-str", lambda: infer.hypotest(1.0, m, calctype="toybased", ntoys=10, seed="abc"),
         InvalidOptionType, r"seed must be None, an integer >= 0 or a numpy.random.Generator"),
        ("toys-ntoys-float", lambda: infer.hypotest(1.0, m, calctype="toybased", ntoys=2.5),
         InvalidOptionType, r"ntoys must be an integer"),
        ("batch-mu-nan", lambda: infer.qmu_tilde_yields_batch(math.nan, m, "SR", "signal", np.ones((2, 8))),
         InvalidParameters, r"mu must be a finite"),
    ]


def test_api_catalogue(model: histgym.Model) -> None:
    """Every public API entry refuses its bad input with the exact type and a named culprit."""
    failures = []
    for name, call, exc, pattern in _api_cases(model):
        try:
            call()
        except Exception as err:  # noqa: BLE001 - collected and reported below
            import re

            if type(err) is not exc:
                failures.append(f"{name}: {type(err).__name__} instead of {exc.__name__}: {err}")
            elif not isinstance(err, HistgymError):
                failures.append(f"{name}: not a HistgymError: {type(err).__name__}")
            elif not re.search(pattern, str(err)):
                failures.append(f"{name}: message {str(err)!r} does not match {pattern!r}")
        else:
            failures.append(f"{name}: no exception")
    assert not failures, "\n".join(failures)


def test_poi_without_effect() -> None:
    """Defect 8: a POI that scales only empty bins. The fit is flagged, hypotest says CLs = 1
    (no sensitivity), and an upper limit is refused instead of doubling the bound to 1e15."""
    ws = ws_with(_set(f"{SIG}.data", [0.0] * 8))
    m = histgym.from_pyhf(ws)
    with pytest.warns(histgym.DegenerateModelWarning, match=r"free parameters \['mu'\] have no effect"):
        r = histgym.fit(m)
    assert not r.converged and r.message.startswith("degenerate")
    assert infer.hypotest(1.0, m).cls_obs == pytest.approx(1.0, abs=1e-4)  # no sensitivity
    with pytest.raises(InvalidParameters, match="the POI 'mu' has no effect on the expected yields"):
        infer.upper_limit(m)


def test_poi_scaling_every_sample_and_extreme_parameters() -> None:
    """Defect 8/10: a POI on every sample made Z0 = 1.34e154 (a failed fit at POI = 0 read as a
    number); far-out finite parameters gave a NaN twice_nll."""
    ws = ws_with(lambda w: w["channels"][0]["samples"][1]["modifiers"].append(
        {"name": "mu", "type": "normfactor", "data": None}))
    m = histgym.from_pyhf(ws)
    pattern = r"every sample in bin 0 of channel 'SR' is scaled by the POI 'mu'.*infinite"
    for call in (lambda: infer.significance(m), lambda: infer.q0(m),
                 lambda: infer.hypotest(0.0, m, test_stat="q0")):
        with pytest.raises(InvalidParameters, match=pattern):
            call()
    assert infer.qmu_tilde(1.0, m) >= 0.0  # exclusion tests remain well defined
    m0 = histgym.from_pyhf(WS)
    assert m0.twice_nll(np.array([1e300, 1e300])) == math.inf


def test_exceptions_subclass_the_builtins() -> None:
    assert issubclass(InvalidOptionType, TypeError) and issubclass(InvalidOptionType, ValueError)
    assert issubclass(WorkspaceTypeError, TypeError) and issubclass(WorkspaceTypeError, WorkspaceError)
    assert issubclass(ResetNeeded, RuntimeError)
    assert issubclass(UnknownName, KeyError) and issubclass(InvalidOption, ValueError)
    for name in ("InvalidOption", "InvalidOptionType", "ResetNeeded", "WorkspaceTypeError"):
        assert issubclass(getattr(histgym, name), HistgymError)


# ----------------------------------------------------------------------------- environments
ENV_CASES = [
    ("action-scale-str", dict(action_scale="0.1"), InvalidOptionType, r"action_scale must be a real number, got str '0.1'"),
    ("action-scale-zero", dict(action_scale=0.0), InvalidOption, r"action_scale must be > 0"),
    ("max-steps-bool", dict(max_steps=True), InvalidOptionType, r"max_steps must be an integer, got bool"),
    ("max-steps-float", dict(max_steps=64.0), InvalidOptionType, r"max_steps must be an integer"),
    ("max-steps-zero", dict(max_steps=0), InvalidOption, r"max_steps must be an integer >= 1"),
    ("mle-max-iter-float", dict(mle_max_iter=2.7), InvalidOptionType, r"mle_max_iter must be an integer, got float"),
    ("mle-tol-nan", dict(mle_tol=math.nan), InvalidOption, r"mle_tol must be a finite"),
    ("return-gradient-str", dict(return_gradient="yes"), InvalidOptionType, r"return_gradient must be True or False"),
    ("return-gradient-int", dict(return_gradient=1), InvalidOptionType, r"return_gradient must be True or False"),
    ("init-noise-negative", dict(init_noise=-0.1), InvalidOption, r"init_noise must be >= 0"),
    ("clip-min-zero", dict(clip_min=0.0), InvalidOption, r"clip_min must be > 0"),
    ("clip-max-below-min", dict(clip_min=1.0, clip_max=0.5), InvalidOption, r"clip_max must be > 1.0"),
    ("clip-range-excludes-nominal", dict(clip_max=2.0), InvalidOption, r"nominal yields of 'signal' in 'SR' lie outside"),
    ("mu-test-nan", dict(reward_metric="qmu", mu_test=math.nan), InvalidOption, r"mu_test must be a finite"),
    ("mu-test-negative", dict(reward_metric="zmu", mu_test=-1.0), InvalidOption, r"mu_test must be >= 0"),
    ("metric-unknown", dict(reward_metric="qmuu"), InvalidOption, r"unknown reward_metric 'qmuu'.*Did you mean 'qmu'"),
    ("action-mode-unknown", dict(action_mode="mul"), InvalidOption, r"unknown action_mode 'mul'"),
    ("data-unknown", dict(data="asimow"), InvalidOption, r"unknown data 'asimow'.*Did you mean 'asimov'"),
    ("reward-mode-unknown", dict(reward_mode="diff"), InvalidOption, r"unknown reward_mode 'diff'"),
    ("budget-unknown", dict(budget="sum"), InvalidOption, r"unknown budget 'sum'"),
    ("fixed-params-short", dict(fixed_params=[1.0]), InvalidParameters, r"fixed_params has shape \(1,\)"),
    ("render-mode", dict(render_mode="human"), InvalidOption, r"unknown render_mode 'human'"),
    ("channel-unknown", dict(channel="CR"), UnknownName, r"unknown channel 'CR'"),
    ("sample-unknown", dict(sample="sig"), UnknownName, r"unknown sample 'sig' in channel 'SR'.*Did you mean 'signal'"),
]


@pytest.mark.parametrize(("kwargs", "exc", "pattern"), [c[1:] for c in ENV_CASES], ids=[c[0] for c in ENV_CASES])
def test_environment_options(kwargs: dict[str, Any], exc: type, pattern: str) -> None:
    from histgym.envs import HistFactoryEnv, HistFactoryVectorEnv

    opts = dict(channel="SR", sample="signal")
    opts.update(kwargs)
    with pytest.raises(exc, match=pattern):
        HistFactoryEnv(WS, **opts)
    if "render_mode" not in kwargs:
        with pytest.raises(exc, match=pattern):
            HistFactoryVectorEnv(WS, num_envs=2, **opts)


def test_environment_refuses_a_fixed_poi() -> None:
    """Defect 7: inference refuses a fixed POI, and so do the profiled rewards."""
    from histgym.envs import make_histfactory_env

    ws = ws_with(_par({"name": "mu", "fixed": True}))
    for metric in ("q0", "z0", "qmu", "zmu"):
        with pytest.raises(InvalidOption, match=r"profiles the POI 'mu', but the measurement fixes it"):
            make_histfactory_env(ws, channel="SR", sample="signal", reward_metric=metric)
    with pytest.raises(InvalidParameters, match="the POI 'mu' is fixed"):
        infer.q0(histgym.from_pyhf(ws))
    make_histfactory_env(ws, channel="SR", sample="signal", reward_metric="nll")  # no fit: fine


def test_environment_order_and_actions() -> None:
    from histgym.envs import make_histfactory_env

    env = make_histfactory_env(WS, channel="SR", sample="signal", reward_metric="q0", max_steps=2)
    with pytest.raises(ResetNeeded, match=r"before reset\(\)"):
        env.step(np.zeros(8, dtype=np.float32))
    env.reset(seed=0)
    ref = env.step(np.full(8, 0.5))[1]
    for action in (np.full(8, 0.5, np.float16), np.full(8, 0.5, np.longdouble),
                   np.full(8, 0.5, ">f8"), np.full(8, 0.5, ">f4"), [0.5] * 8, np.full(8, 1, int)):
        env.reset(seed=0)
        obs, reward, _, _, info = env.step(action)
        if np.asarray(action).dtype.kind == "f":
            assert reward == pytest.approx(ref, rel=1e-6)
    env.reset(seed=0)
    bad = [
        (np.zeros(7), InvalidParameters, r"action has shape \(7,\); expected \(8,\)"),
        (np.full(8, np.nan), InvalidParameters, r"non-finite entries at \[0, 1, 2, 3, 4\]"),
        (np.array(["a"] * 8), InvalidParameters, r"action must be an array of real numbers"),
        (np.zeros(8, complex), InvalidParameters, r"real numbers"),
    ]
    for action, exc, pattern in bad:
        with pytest.raises(exc, match=pattern):
            env.step(action)
    env.step(np.zeros(8))
    _, _, _, truncated, _ = env.step(np.zeros(8))
    assert truncated
    with pytest.raises(ResetNeeded, match=r"truncated after max_steps=2 steps"):
        env.step(np.zeros(8))
    env.reset()
    env.step(np.zeros(8))  # fine again
    with pytest.raises(InvalidOptionType, match=r"seed must be None, an integer >= 0"):
        env.reset(seed="abc")
    with pytest.raises(InvalidOption, match=r"unknown reset options \['yeilds'\]"):
        env.reset(options={"yeilds": np.ones(8)})
    with pytest.raises(InvalidParameters, match=r"yields have shape \(3,\); expected \(8,\)"):
        env.reset(options={"yields": np.ones(3)})
    obs, _ = env.reset(seed=np.int64(3))
    assert env.observation_space.contains(obs)


def test_environment_state_is_checked_when_unpickled() -> None:
    """A foreign state never reaches the kernels (they index it by the environment's sizes)."""
    from histgym.envs import HistFactoryVectorEnv, make_histfactory_env

    env = make_histfactory_env(WS, channel="SR", sample="signal")
    env.reset(seed=0)
    state = env.__getstate__()
    S, step, sizes = state["state"]
    state["state"] = (S[:, :-3].copy(), step, sizes)
    with pytest.raises(InvalidParameters, match=r"environment state does not fit"):
        pickle.loads(pickle.dumps(env)).__setstate__(state)
    venv = HistFactoryVectorEnv(WS, num_envs=2, channel="SR", sample="signal")
    with pytest.raises(ResetNeeded, match="before reset"):
        venv.step(np.zeros((2, 8)))
    venv.reset(seed=np.int64(3))  # numpy integer seeds work (defect 9)
    venv.step(np.zeros((2, 8), dtype=np.float16))
    with pytest.raises(InvalidParameters, match=r"actions have shape \(3, 8\); expected \(2, 8\)"):
        venv.step(np.zeros((3, 8)))
    with pytest.raises(InvalidOption, match="got 3 seeds for 2 environments"):
        venv.reset(seed=[1, 2, 3])
    with pytest.raises(InvalidOptionType, match="seed must be"):
        venv.reset(seed="abc")
    d = venv.__getstate__()
    d["num_envs"] = 3
    with pytest.raises(InvalidParameters, match="environment state does not fit"):
        HistFactoryVectorEnv.__new__(HistFactoryVectorEnv).__setstate__(d)


# ----------------------------------------------------------------------------- command line
def _cli_cases(tmp: Path) -> list[tuple[str, list[str], str]]:
    good = tmp / "ws.json"
    good.write_text(json.dumps(WS))
    short = tmp / "short_obs.json"
    short.write_text(json.dumps(ws_with(_set("observations[0].data", [1.0] * 5))))
    normsys = tmp / "normsys.json"
    normsys.write_text(json.dumps(ws_with(_set(f"{BKG}.modifiers[0].data.lo", 0.0))))
    (tmp / "trunc.json").write_text(json.dumps(WS)[:100])
    (tmp / "bad_patch.json").write_text("{ nope")
    return [
        ("missing", ["fit", str(tmp / "nope.json")], r"nope\.json' is neither JSON text"),
        ("directory", ["fit", str(tmp)], r"is a directory"),
        ("truncated", ["significance", str(tmp / "trunc.json")], r"trunc\.json' is not valid JSON"),
        ("short-observation", ["cls", str(short)], r"observation of channel 'SR' has 5 bins but the channel has 8"),
        ("normsys-lo", ["limit", str(normsys), "--json"], r"normsys factors must be > 0"),
        ("measurement", ["fit", str(good), "--measurement", "nope"], r"unknown measurement 'nope'"),
        ("mu-nan", ["cls", str(good), "--mu", "nan"], r"argument --mu: must be a finite number, got 'nan'"),
        ("mu-text", ["cls", str(good), "--mu", "one"], r"argument --mu: invalid number: 'one'"),
        ("cl", ["limit", str(good), "--cl", "1.5"], r"cl must be < 1"),
        ("top", ["rank", str(good), "--top", "-1"], r"top_n must be an integer >= 0, got -1"),
        ("bad-patch", ["fit", str(good), "--patch", str(tmp / "bad_patch.json")], r"patch file .*bad_patch\.json' is not valid JSON"),
        ("unknown-command", ["fitt", str(good)], r"invalid choice: 'fitt'"),
        ("missing-argument", ["fit"], r"the following arguments are required: workspace"),
        ("train-workspace", ["train", "--workspace", str(tmp / "nope.json"), "--timesteps", "10"],
         r"nope\.json' is neither JSON text"),
    ]


CLI_IDS = ["missing", "directory", "truncated", "short-observation", "normsys-lo", "measurement",
           "mu-nan", "mu-text", "cl", "top", "bad-patch", "unknown-command", "missing-argument",
           "train-workspace"]  # fmt: skip


@pytest.mark.parametrize("case", CLI_IDS)
def test_cli_input_errors(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if case == "train-workspace":
        pytest.importorskip("stable_baselines3")
    args, pattern = next((a, p) for n, a, p in _cli_cases(tmp_path) if n == case)
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse usage errors (what the console script exits with)
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    if case == "train-workspace":  # train prints a progress line first
        lines = [ln for ln in lines if ln.startswith("histgym")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    import re

    assert re.search(pattern, lines[0]), lines[0]


def test_cli_json_is_always_valid(tmp_path: Path) -> None:
    """JSON has no NaN/Infinity: non-finite values are written as null and listed."""
    text, bad = cli.dumps_json({"a": 1.0, "b": [math.nan, 2.0], "c": {"d": math.inf}, "e": np.float32(3)})
    got = json.loads(text)
    assert got == {"a": 1.0, "b": [None, 2.0], "c": {"d": None}, "e": 3.0,
                   "non_finite_as_null": ["b[0]", "c.d"]}
    assert bad == ["b[0]", "c.d"]
    json.loads(text, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
