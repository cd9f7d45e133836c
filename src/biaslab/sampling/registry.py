"""The sampler registry: each sampler's knobs, defaults, cost and figure symbols, read by
config checks, sampling, figures, budget and the schema enum (a test checks it against this
registry).

Adding a sampler = ``sampling.samplers.sample_<name>`` + a row of ``SAMPLERS`` + the enum of
``sampler`` in ``workflow/schemas/config.schema.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from biaslab.base.columns import (
    KNOB_CHOICES,
    KNOB_COLUMNS,
    KNOB_DEFAULTS,
    KNOB_TYPES,
    fmt_value,
    is_given,
    treatment_labels,
)


@dataclass(frozen=True)
class SamplerSpec:
    """The facts of one sampler, read by config checks, sampling, figures, budget and the
    schema enum (a test checks it against this registry).

    ``knobs``: the ``SamplingConfig`` fields its function ``sampling.sample_<name>`` takes;
    ``defaults``: the value of a grid knob when a row leaves it out; ``fixed``: knobs whose
    default is the only value allowed (ddpm's eta is 1 by definition); ``noise_knobs``: knobs
    that make it stochastic when positive (``always_stochastic``: ancestral sampling);
    ``evals_per_step``: U-Net evaluations for ``steps`` (classifier-free guidance doubles them);
    ``knob_symbols``: how its knobs appear in figure labels."""

    knobs: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    fixed: tuple[str, ...] = ()
    noise_knobs: tuple[str, ...] = ()
    always_stochastic: bool = False
    evals_per_step: Callable[[int], int] = lambda steps: steps
    knob_symbols: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    def default(self, knob: str) -> Any:
        return self.defaults.get(knob, KNOB_DEFAULTS.get(knob))


_EDM_KNOBS = ("s_churn", "s_min", "s_max", "s_noise")
#: New configs space DDPM/DDIM timesteps "trailing": the first step is at pure noise.
_SPACING_DEFAULT = "trailing"

#: The sampler registry: name -> spec. Adding a sampler = ``sampling.sample_<name>`` + a row
#: here + the enum of ``sampler`` in ``workflow/schemas/config.schema.yaml``.
SAMPLERS: dict[str, SamplerSpec] = {
    "ddpm": SamplerSpec(
        knobs=("eta", "timestep_spacing"),
        defaults={"eta": 1.0, "timestep_spacing": _SPACING_DEFAULT},
        fixed=("eta",),
        always_stochastic=True,
        knob_symbols={"eta": "η"},
        description="ancestral DDPM (diffusers DDPMScheduler)",
    ),
    "ddim": SamplerSpec(
        knobs=("eta", "timestep_spacing"),
        defaults={"eta": 0.0, "timestep_spacing": _SPACING_DEFAULT},
        noise_knobs=("eta",),
        knob_symbols={"eta": "η"},
        description="DDIM with eta (diffusers DDIMScheduler)",
    ),
    "euler": SamplerSpec(
        knobs=_EDM_KNOBS,
        noise_knobs=("s_churn",),
        knob_symbols={"s_churn": "S_churn"},
        description="EDM Algorithm 2 without the Heun correction",
    ),
    "heun": SamplerSpec(
        knobs=_EDM_KNOBS,
        noise_knobs=("s_churn",),
        evals_per_step=lambda steps: 2 * steps - 1,  # the last step is Euler
        knob_symbols={"s_churn": "S_churn"},
        description="EDM Algorithm 2 (Heun, second order)",
    ),
    # no timestep_spacing: with Karras sigmas diffusers recomputes the timesteps from the
    # sigmas, whatever the spacing
    "dpmpp": SamplerSpec(description="DPM-Solver++(2M), Karras sigmas (diffusers)"),
}


def sampler_spec(name: str) -> SamplerSpec:
    try:
        return SAMPLERS[str(name)]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r} ({list(SAMPLERS)})") from None


#: The grid knobs that only some samplers have (each sampler's ``knobs`` say which).
SAMPLER_SPECIFIC_KNOBS = tuple(
    k for k in KNOB_COLUMNS if any(k in spec.knobs for spec in SAMPLERS.values())
)


def knob_error(sampler: str, values: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(knob, message)`` for the first sampler-specific knob in ``values`` that ``sampler``
    does not have (a value other than "off"), that it has fixed at another value, or whose
    value is not one of ``KNOB_CHOICES``; None if the knobs fit. Config checks and
    ``sampling.generate.SamplerConfig`` both ask here."""
    spec = sampler_spec(sampler)
    for knob in SAMPLER_SPECIFIC_KNOBS:
        if knob not in values:
            continue
        having = [n for n, s in SAMPLERS.items() if knob in s.knobs and knob not in s.fixed]
        users = " and ".join(having) + (" has" if len(having) == 1 else " have")
        value = KNOB_TYPES[knob](values[knob])
        if knob in spec.fixed and value != spec.default(knob):
            return knob, (
                f"the {sampler} sampler has no {knob} knob (it is {fmt_value(spec.default(knob))}"
                f" by definition: leave it out; {users} it)"
            )
        if knob not in spec.knobs and value != KNOB_DEFAULTS[knob]:
            return knob, f"the {sampler} sampler has no {knob} knob ({users} it)"
        choices = KNOB_CHOICES.get(knob)
        if knob in spec.knobs and choices and value not in choices:
            return knob, f"{knob} {value!r} is not one of {', '.join(choices)}"
    return None


def is_stochastic(row: Mapping[str, Any]) -> bool:
    """Whether a sampler setting injects fresh noise during sampling (ancestral DDPM,
    DDIM with eta > 0, EDM with S_churn > 0)."""
    spec = sampler_spec(row["sampler"])
    if spec.always_stochastic:
        return True
    return any(float(row.get(k, 0.0) or 0.0) > 0 for k in spec.noise_knobs)


def network_evaluations(row: Mapping[str, Any]) -> int:
    """U-Net image-evaluations per sample of a grid row (guidance doubles them)."""
    n = sampler_spec(row["sampler"]).evals_per_step(int(row["steps"]))
    return n * (2 if float(row.get("guidance", 0) or 0) else 1)


def setting_label(key: Mapping[str, Any]) -> str:
    """``ddpm, 1000 steps, η=1`` from a dict of sampler knobs: sampler, steps, then the knobs
    that are on (the sampler's own knobs, a timestep spacing other than the sampler's default
    as ``leading spacing``, guidance, bypass)."""
    parts = []
    if is_given(key.get("sampler")):
        parts.append(str(key["sampler"]))
    if is_given(key.get("steps")):
        parts.append(f"{fmt_value(key['steps'])} steps")
    spec = SAMPLERS.get(str(key.get("sampler")))
    for knob, symbol in (spec.knob_symbols if spec else {}).items():
        if is_given(key.get(knob)):
            parts.append(f"{symbol}={fmt_value(key[knob])}")
    spacing = key.get("timestep_spacing")
    if spec and "timestep_spacing" in spec.knobs and is_given(key.get("timestep_spacing")):
        if spacing != spec.default("timestep_spacing"):
            parts.append(f"{spacing} spacing")
    if is_given(key.get("guidance")) and key["guidance"] != 0:
        parts.append(f"w={fmt_value(key['guidance'])}")
    return ", ".join(parts + treatment_labels(key))
