"""``edgepose tune``: measure this device and pick the configuration to run, within an accuracy budget.

Candidates are every execution provider this onnxruntime build has x every model variant beside
the model (fp32/fp16/int8) x input sizes (the presets, a few budgets between them and the
multi-scale ``accurate`` preset) x thread counts x inference workers (streaming). Speed is measured
with the bench core (:mod:`edgepose.bench`: one worker process per candidate, candidates run in lock
step on the user's own frames, end to end: read, pre-process, inference, decode); accuracy is COCO
AP with annotations, else agreement with the most accurate candidate on the same frames. The
choice goes into a profile JSON that ``edgepose run --profile``, ``edgepose eval --profile`` and
:meth:`edgepose.PoseEstimator.from_profile` use.

Modules:
    plan      the candidates and what was skipped (with why)
    engines   the bench engine a candidate runs in (scales, flip, workers, CPU time)
    accuracy  AP on annotations, or agreement (OKS of matched people) with a reference
    choose    the choice rule, dominance and the Pareto front (pure functions)
    profile   the profile file: write, load, check the model's sha256, apply to run/eval/the API
    report    the markdown table and the Pareto plot
    core      the whole run: plan, measure (time-boxed), choose, confirm

Example:
    >>> from edgepose.tune import Options, tune
    >>> result = tune(Options(frames="clip.mp4", target_fps=15, quick=True))  # doctest: +SKIP
    >>> result["choice"]["size"]  # doctest: +SKIP
"""

from edgepose.tune.core import Options, TuneError, tune, tune_models
from edgepose.tune.profile import ProfileError, load_profile

__all__ = ["Options", "TuneError", "tune", "tune_models", "ProfileError", "load_profile"]
