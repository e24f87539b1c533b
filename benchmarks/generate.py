"""Benchmark models: synthetic pyhf workspaces of a chosen size.

``generate_workspace(n_bins)`` builds a HistFactory workspace of the kind used to compare
HistFactory engines by size (the reference's "50 bins / 81 parameters" and
"500 bins / 531 parameters" models):

- ``n_channels`` channels (default 1) sharing ``n_bins`` bins between them;
- ``n_samples`` samples (default 3): ``signal`` (a Gaussian bump, normfactor ``mu``) and
  ``n_samples - 1`` backgrounds (falling exponentials and a flat one);
- ``n_normsys`` normsys and ``n_histosys`` histosys nuisance parameters (default 15 + 15),
  spread round-robin over the backgrounds (and the signal for every fourth one);
- one ``staterror`` parameter per bin (on every background);
- observed data Poisson-fluctuated from the nominal signal + background with
  ``numpy.random.default_rng(seed)``.

The parameter count is ``1 + n_bins + n_normsys + n_histosys`` (81 for 50 bins, 531 for 500).

Command line::

    python benchmarks/generate.py --bins 50 -o ws50.json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

__all__ = ["expected_n_params", "generate_workspace", "main"]


def expected_n_params(n_bins: int, *, n_normsys: int = 15, n_histosys: int = 15) -> int:
    """Number of parameters of ``generate_workspace(n_bins, ...)``: mu + staterror + systematics."""
    return 1 + n_bins + n_normsys + n_histosys


def _split(n_bins: int, n_channels: int) -> list[int]:
    base, extra = divmod(n_bins, n_channels)
    return [base + (1 if i < extra else 0) for i in range(n_channels)]


def generate_workspace(
    n_bins: int,
    n_samples: int = 3,
    seed: int = 0,
    *,
    n_channels: int = 1,
    n_normsys: int = 15,
    n_histosys: int = 15,
    signal_strength: float = 1.0,
    stat_rel: float = 0.05,
) -> dict[str, Any]:
    """Build a synthetic pyhf workspace (a JSON-ready dict).

    Args:
        n_bins: total number of bins (split as evenly as possible over the channels).
        n_samples: number of samples, at least 2: ``signal`` then backgrounds; defaults to 3.
        seed: seed of the ``numpy.random.Generator`` drawing the shapes' jitter and the
            Poisson-fluctuated observed data; defaults to 0.
        n_channels: number of channels, defaults to 1 (one channel ``"SR"``).
        n_normsys: number of normsys nuisance parameters, defaults to 15.
        n_histosys: number of histosys nuisance parameters, defaults to 15.
        signal_strength: the signal scale in the generated data, defaults to 1.0.
        stat_rel: typical relative MC statistical uncertainty per bin, defaults to 0.05.

    Returns:
        A pyhf workspace dict (schema ``workspace.json`` of pyhf 0.7) with one measurement
        ``"meas"`` whose POI is ``mu``; ``expected_n_params(n_bins, ...)`` parameters.
    """
    if n_bins < n_channels or n_channels < 1:
        msg = f"need n_bins >= n_channels >= 1, got n_bins={n_bins}, n_channels={n_channels}"
        raise ValueError(msg)
    if n_samples < 2:
        raise ValueError(f"need n_samples >= 2 (signal + at least one background), got {n_samples}")
    rng = np.random.default_rng(seed)
    channel_bins = _split(n_bins, n_channels)
    channel_names = ["SR"] if n_channels == 1 else [f"SR{i}" for i in range(n_channels)]
    bkg_names = [f"bkg{i}" for i in range(1, n_samples)]

    channels: list[dict[str, Any]] = []
    observations: list[dict[str, Any]] = []
    for ci, (cname, nb) in enumerate(zip(channel_names, channel_bins, strict=True)):
        x = (np.arange(nb) + 0.5) / nb  # bin centres in [0, 1]
        # signal: Gaussian bump, position moving with the channel index
        centre = 0.5 if n_channels == 1 else 0.25 + 0.5 * ci / max(n_channels - 1, 1)
        bump = np.exp(-0.5 * ((x - centre) / 0.08) ** 2)
        bkgs: list[np.ndarray] = []
        for k in range(len(bkg_names)):
            if k % 2 == 0:
                slope = 2.0 + 1.5 * k
                shape = np.exp(-slope * x)
            else:
                shape = np.ones_like(x) * (0.6 + 0.1 * k)
            jitter = 1.0 + 0.03 * rng.standard_normal(nb)
            total = 2000.0 * (0.6**k)  # background events per channel
            b = total * shape / shape.sum() * jitter
            bkgs.append(np.maximum(b, 1e-3))
        btot = np.sum(bkgs, axis=0)
        # total signal = 10% of the total background, whatever the binning
        sig = np.maximum(0.1 * btot.sum() * bump / bump.sum(), 1e-6)

        samples: list[dict[str, Any]] = [
            {
                "name": "signal",
                "data": sig.tolist(),
                "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
            }
        ]
        for bname, b in zip(bkg_names, bkgs, strict=True):
            rel = stat_rel * (1.0 + 0.5 * rng.random(nb))
            samples.append(
                {
                    "name": bname,
                    "data": b.tolist(),
                    "modifiers": [
                        {
                            "name": f"staterror_{cname}",
                            "type": "staterror",
                            "data": (rel * b).tolist(),
                        }
                    ],
                }
            )

        def target(j: int, samples: list[dict[str, Any]] = samples) -> dict[str, Any]:
            # every fourth systematic acts on the signal; the others round-robin on backgrounds
            if j % 4 == 3:
                return samples[0]
            return samples[1 + j % len(bkg_names)]

        for j in range(n_normsys):
            size = 0.02 + 0.08 * rng.random()
            asym = 1.0 + 0.3 * (rng.random() - 0.5)
            target(j)["modifiers"].append(
                {
                    "name": f"norm_{j}",
                    "type": "normsys",
                    "data": {"hi": 1.0 + size * asym, "lo": 1.0 - size / asym},
                }
            )
        for j in range(n_histosys):
            s = target(j)
            nom = np.asarray(s["data"])
            amp = 0.02 + 0.06 * rng.random()
            phase = rng.random()
            tilt = amp * np.cos(2.0 * np.pi * (x * (1 + j % 3) + phase))
            hi = nom * (1.0 + tilt)
            lo = nom * (1.0 - 0.9 * tilt)
            s["modifiers"].append(
                {
                    "name": f"shape_{j}",
                    "type": "histosys",
                    "data": {"hi_data": hi.tolist(), "lo_data": lo.tolist()},
                }
            )

        expected = signal_strength * sig + btot
        observed = rng.poisson(expected).astype(float)
        channels.append({"name": cname, "samples": samples})
        observations.append({"name": cname, "data": observed.tolist()})

    return {
        "channels": channels,
        "observations": observations,
        "measurements": [
            {
                "name": "meas",
                "config": {
                    "poi": "mu",
                    "parameters": [{"name": "mu", "bounds": [[0.0, 10.0]], "inits": [1.0]}],
                },
            }
        ],
        "version": "1.0.0",
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: write a generated workspace as JSON (to ``-o`` or stdout)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bins", type=int, default=50, help="number of bins (default 50)")
    parser.add_argument("--samples", type=int, default=3, help="number of samples (default 3)")
    parser.add_argument("--channels", type=int, default=1, help="number of channels (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("-o", "--output", default="-", help="output file (default - = stdout)")
    args = parser.parse_args(argv)
    ws = generate_workspace(args.bins, args.samples, args.seed, n_channels=args.channels)
    text = json.dumps(ws, indent=1)
    if args.output == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(args.output, "w") as fh:
            fh.write(text + "\n")
        n = expected_n_params(args.bins)
        msg = f"wrote {args.output}: {args.bins} bins, {args.samples} samples, {n} parameters"
        print(msg, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
