"""Turn the Train page's widget values into the CLI command a user would type (no Streamlit).

Only the fields that differ from the preset become `--set key=value` overrides, so the command
stays as short as the one a person would write. Validation is the config's own: the preset
plus overrides go through `adakd.presets.resolve_preset` (sweeps: every grid point through
`adakd.training.sweep.build_config`), and its ValueError message is shown as it is.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from adakd.config import TYPES, RunConfig
from adakd.presets import TABLE3, TABLE4, TABLE5, resolve_preset
from adakd.runs.rundir import check_run_name
from adakd.training.sweep import build_config, expand_grid, parse_grid

PRESET_HELP = {
    "demo": "The offline demo and study regime: SmolLM2-135M-Instruct, fine-tuned on chatterbot's "
    "training replies first, → a student with half its MLP neurons; about 8 minutes per run on 2 CPU "
    "cores, with probes and the held-out evaluation. The first run on a machine fine-tunes the teacher "
    "first (about 10 minutes; its log shows the progress), which every later run reuses.",
    "quick": "A quick look at the machinery (about 3 minutes): a 6-layer student that does not learn "
    "enough to compare methods.",
    "smoke": "Seconds: two tiny random models, a few steps. For checking that everything works.",
    "gpt2-dolly": "GPU: GPT-2 XL → GPT-2 on databricks-dolly-15k (needs the models in the HF cache "
    "and the Dolly JSONL file).",
    "ablation-base": "Demo shapes with LATF and IDTS off: plain reverse-KL KD.",
    "ablation-idts": "Demo shapes, IDTS only.",
    "ablation-latf": "Demo shapes, LATF only.",
    "ablation-adakd": "Demo shapes, full AdaKD (LATF + IDTS).",
}
_TABLE1 = {
    "fkl": "forward KL",
    "rkl": "reverse KL",
    "ab": "AB divergence (α 0.2, β 0.7)",
    "gkd": "GKD — JSD (λ 0.9) on a mix of data and the student's own samples (λ_on 0.5)",
    "distillm": "DistiLLM — skew reverse KL (λ 0.1) with adaptive off-policy student samples",
}
PRESET_HELP.update(
    {
        f"table1-{m}{s}": f"Paper Table 1 on the demo settings: {text}, "
        + ("with AdaKD (LATF + IDTS)." if s else "LATF and IDTS off.")
        for m, text in _TABLE1.items()
        for s in ("", "-adakd")
    }
)
PRESET_HELP["table1-sft"] = (
    "Paper Table 1's SFT baseline on the demo settings: cross-entropy on the reference replies only, no teacher."
)
PRESET_HELP.update(
    {
        f"table3-{arm}": f"Paper Table 3 on the demo settings: full AdaKD with the {arm} difficulty indicator."
        for arm in TABLE3
    }
)
PRESET_HELP.update(
    {f"table4-{arm}": f"Paper Table 4 on the demo settings: IDTS on (c 0.5), ratio schedule {arm}." for arm in TABLE4}
)
PRESET_HELP.update(
    {f"table5-{arm}": f"Paper Table 5 on the demo settings: LATF on, temperature strategy {arm}." for arm in TABLE5}
)


@dataclass
class Request:
    """One CLI launch: `python -m adakd <kind> <args>` writing `run_dir` on `device`."""

    kind: str  # "train" | "sweep"
    args: list[str]
    run_dir: Path
    device: str
    config: RunConfig  # the (first point's) resolved config
    points: int = 1

    @property
    def display(self) -> str:
        return "python -m adakd " + shlex.join([self.kind, *self.args])


def format_value(value) -> str:
    """A widget value as the CLI's `--set` syntax (lists comma separated, None as none)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _normalise(field: str, value):
    """Widget value -> config value (number inputs give floats, text gives strings)."""
    if field == "student_layers":
        text = str(value).strip().strip("[]")
        if not text:
            return None
        try:
            return [int(x) for x in text.replace(" ", "").split(",") if x]
        except ValueError:
            raise ValueError(f"student_layers = {value!r}: give comma-separated layer numbers, e.g. 0,6,12") from None
    if field == "max_train_examples":
        return None if not value else int(value)
    if TYPES[field] in (int, float):  # number widgets: the field's own type
        return TYPES[field](value)
    return value.strip() if isinstance(value, str) else value


def overrides_from(values: dict, defaults: RunConfig) -> list[str]:
    """`key=value` strings for the fields whose value differs from the preset's."""
    out = []
    for field, raw in values.items():
        value = _normalise(field, raw)
        current = getattr(defaults, field)
        if (
            isinstance(value, float)
            and isinstance(current, (int, float))
            and abs(value - current) <= 1e-12 * max(1, abs(current))
        ):
            continue
        if value != current:
            out.append(f"{field}={format_value(value)}")
    return out


def parse_extra(text: str) -> list[str]:
    """The free-form "key=value" lines (blank lines and # comments ignored)."""
    lines = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ValueError(f"more settings, line {number}: {line!r} is not of the form key=value")
        key, _, value = line.partition("=")
        lines.append(f"{key.strip()}={value.strip()}")
    return lines


def build_request(
    mode: str, preset: str, values: dict, extra: str, grid: dict, name: str, defaults: RunConfig, root
) -> Request:
    """The validated launch for the form; raises ValueError with the message to show."""
    name = check_run_name((name or "").strip())
    run_dir = Path(root) / name
    if run_dir.exists():
        raise ValueError(f"a run or sweep named {name!r} already exists in {root}: choose another name")
    overrides = overrides_from(values, defaults) + parse_extra(extra)
    if mode == "single":
        config = resolve_preset(preset, overrides)
        _preflight([config])
        args = ["--preset", preset] + (["--set", *overrides] if overrides else []) + ["--run-dir", str(run_dir)]
        return Request("train", args, run_dir, config.device, config)

    varied = set(grid) | ({"latf", "idts"} if "ablation" in grid else set())
    overrides = [o for o in overrides if o.partition("=")[0] not in varied]
    specs = [key if key == "ablation" else f"{key}={value.replace(' ', '')}" for key, value in grid.items()]
    points = expand_grid(parse_grid(specs))
    base = dict(o.split("=", 1) for o in overrides)
    configs = [build_config(preset, {**base, **point}) for _, point in points]
    _preflight(configs)
    args = ["--preset", preset] + [a for spec in specs for a in ("--grid", spec)]
    args += (["--set", *overrides] if overrides else []) + ["--root", str(root), "--name", name]
    return Request("sweep", args, run_dir, configs[0].device, configs[0], points=len(points))


def _preflight(configs: list[RunConfig]) -> None:
    """The trainer's own checks that need no model (data and model paths, divergence parameters,
    device), so a launch that would stop at once shows its message here instead."""
    from adakd.training.runsetup import preflight  # imports torch: only once the form is filled in

    for config in configs:
        preflight(config)


def sweep_args(manifest: dict, folder) -> list[str]:
    """`python -m adakd sweep` arguments that re-run the sweep in `folder` from its sweep.json
    (the CLI skips finished points and resumes stopped ones)."""
    folder = Path(folder)
    args = ["--preset", manifest["preset"]] if manifest.get("preset") else []
    for key, values in manifest.get("grid", {}).items():
        args += ["--grid", f"{key}={','.join(map(str, values))}"]
    base = manifest.get("base_overrides") or {}
    if base:
        args += ["--set", *(f"{k}={v}" for k, v in base.items())]
    return args + ["--root", str(folder.parent), "--name", folder.name]
