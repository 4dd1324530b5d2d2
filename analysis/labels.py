"""Short human labels for a run's method (re-exported as `analysis.runs.method_label`).

    method_label({"divergence": "rkl", "latf": "adaptive", "idts": "on", "idts_c": 0.3})
    -> "rkl + AdaKD (c=0.3)"

Settings equal to the method's defaults (docs/method.md) are left out, so runs that differ
only in seed share a label and tables can group by it.
"""

from __future__ import annotations

from adakd.config import RunConfig

# The method's settings a label describes, at their defaults (RunConfig's, the paper's method).
DEFAULTS = {
    key: getattr(RunConfig(), key)
    for key in (
        "divergence",
        "latf",
        "idts",
        "idts_c",
        "base_temperature",
        "indicator",
        "kd_ratio",
        "regime",
        "indicator_topk",
        "ctkd",
        "logit_standardize",
        "latf_pool",
    )
}
REGIME_NAMES = {"gkd": "GKD", "distillm": "DistiLLM"}


def method_label(config: dict) -> str:
    """ "<base>[ + <AdaKD parts>][ (<non-default settings>)]" for a RunConfig dict.

    base: the divergence, prefixed by the data regime when it is not ground truth
    ("GKD/jsd"). Parts: LATF adaptive + IDTS on = "AdaKD"; otherwise "LATF", "IDTS",
    "inverse IDTS", "fixed r=0.75", "linear r 1→0.5", "cosine r 1→0.75", "CTKD", "logit std"
    joined by " + ".
    Extras in parentheses: c (when IDTS is used and c ≠ 0.5), indicator ≠ hellinger ("top-5"
    for the topk indicator with k = 5), τ_base ≠ 1, kd_ratio ≠ 1, "pool=step" (latf_pool, when
    tokens are selected or tempered). kd_ratio = 0 is "SFT" alone.
    Accepts the whole config.json too (uses its "config"). An empty config gives "unknown".
    """
    if isinstance(config.get("config"), dict):
        config = config["config"]
    if not config:
        return "unknown"
    get = lambda key: config.get(key, DEFAULTS.get(key))  # noqa: E731 - local shorthand
    if not _differs(get("kd_ratio"), 0.0):
        return "SFT" if get("regime") in (None, "ground_truth") else f"SFT ({get('regime')})"
    base = str(get("divergence"))
    regime = get("regime")
    if isinstance(regime, str) and regime in REGIME_NAMES:
        base = f"{REGIME_NAMES[regime]}/{base}"
    elif regime not in (None, "ground_truth"):
        base = f"{regime}/{base}"

    latf, idts = get("latf"), get("idts")
    parts = []
    if latf == "adaptive" and idts == "on":
        parts.append("AdaKD")
    else:
        if latf == "adaptive":
            parts.append("LATF")
        elif latf == "fixed":
            parts.append(f"fixed r={_num(config.get('ratio_start', 1.0))}")
        elif latf in ("linear", "cosine"):
            parts.append(f"{latf} r {_num(config.get('ratio_start', 1.0))}→{_num(config.get('ratio_end', 1.0))}")
        if idts == "on":
            parts.append("IDTS")
        elif idts == "inverse":
            parts.append("inverse IDTS")
    if get("ctkd"):
        parts.append("CTKD")
    if get("logit_standardize"):
        parts.append("logit std")

    extras = []
    if idts in ("on", "inverse") and _differs(get("idts_c"), DEFAULTS["idts_c"]):
        extras.append(f"c={_num(get('idts_c'))}")
    if get("indicator") == "topk":
        extras.append(f"indicator=top-{get('indicator_topk')}")
    elif get("indicator") != DEFAULTS["indicator"]:
        extras.append(f"indicator={get('indicator')}")
    if _differs(get("base_temperature"), DEFAULTS["base_temperature"]):
        extras.append(f"τ={_num(get('base_temperature'))}")
    if _differs(get("kd_ratio"), DEFAULTS["kd_ratio"]):
        extras.append(f"kd_ratio={_num(get('kd_ratio'))}")
    if get("latf_pool") != DEFAULTS["latf_pool"] and (latf != "off" or idts != "off"):
        extras.append(f"pool={get('latf_pool')}")  # which tokens are ranked together

    label = " + ".join([base, *parts])
    return f"{label} ({', '.join(extras)})" if extras else label


def _num(value) -> str:
    """0.75 -> "0.75", 1.0 -> "1" (shortest round-trip form)."""
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def _differs(value, default) -> bool:
    try:
        return abs(float(value) - float(default)) > 1e-12
    except (TypeError, ValueError):
        return value != default
