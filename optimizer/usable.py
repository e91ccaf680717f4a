"""Which plans a method may present: the rule every offered method keeps (issue 16, goal 4).

A method's plan is *usable* when it loads at least one seed, its D90 reaches at least
``MIN_D90_OVER_RX`` x Rx, and its exact ``objective`` is
no worse than the rule-based loading's (``rule_loading``: what a physicist would load by hand,
the ``clinical`` method with its default options, count scaling, the problem's seed and
needle caps kept) or the method proved it optimal for that objective. A method that cannot
give a usable plan refuses the problem (``require_usable``): a one-line ``SeedoptError``
naming the method, what went wrong in numbers and what to use instead: no empty plan, and
none that the rule beats, is shown as a result.

``BaseOptimizer.solve`` hands every result to the method's ``check_usable``; ``milp`` and
``lp`` apply ``require_usable`` there, while ``run`` returns the result as the method left it
(for a caller that wants a stage's raw result or a proven bound, as the benchmarks do).
"""

from __future__ import annotations

import numpy as np

from seedopt.errors import SeedoptError

from .base import OptimizeResult, PlanProblem
from .clinical import clinical_ranking, shortest_prefix_reaching
from .objective import objective, terms

RULE = "the rule-based loading"
"""How messages name the reference plan."""
USE_INSTEAD = "use method hybrid (the default)"
"""The advice every refusal starts from."""
MIN_D90_OVER_RX = 0.5
"""A plan (not proven optimal) whose D90 is below this fraction of Rx is refused even where the
rule's objective is worse: where the organ limits make the goal unreachable the rule's plan
breaks them and scores badly, and a near-empty plan (milp: 3 seeds, D90 0.03 x Rx on a
chest-wall case) would otherwise pass. The default's plans on those cases reach 0.76-0.80."""


def capped_ranking(problem: PlanProblem, ranking: np.ndarray) -> np.ndarray:
    """``ranking`` restricted to the problem's caps: only seeds of the first ``max_needles``
    needles it reaches, and at most ``max_seeds`` of them (unchanged without caps)."""
    needle = np.asarray(problem.seed_needle)[ranking]
    if problem.max_needles is not None:
        _, first = np.unique(needle, return_index=True)
        kept = needle[np.sort(first)][: problem.max_needles]
        ranking = ranking[np.isin(needle, kept)]
    if problem.max_seeds is not None:
        ranking = ranking[: problem.max_seeds]
    return ranking


def rule_loading(problem: PlanProblem) -> np.ndarray:
    """The (m,) bool loading of the ``clinical`` method at its defaults (count scaling: the
    fewest seeds in rule order whose D90 reaches the prescription), taken from the ranking
    restricted to the caps (``capped_ranking``) so that it is a plan the problem allows.

    Costs a bisection of dose evaluations (about log2(m) + 1); needs ``problem.geometry``.
    """
    if problem.geometry is None:
        raise SeedoptError(
            "the usability check needs the candidates' geometry (PlanProblem.geometry) to "
            "build the rule-based loading"
        )
    ranking = capped_ranking(problem, clinical_ranking(problem))
    k, _ = shortest_prefix_reaching(problem, ranking)
    x = np.zeros(problem.n_candidates, dtype=bool)
    x[ranking[:k]] = True
    return x


def require_usable(
    problem: PlanProblem,
    result: OptimizeResult,
    *,
    what: str,
    advice: str = USE_INSTEAD,
    proven_optimal: bool = False,
) -> OptimizeResult:
    """``result`` if its plan is usable (module docstring), with ``extra["rule_objective"]``
    set (None when ``proven_optimal`` spared the comparison); else a ``SeedoptError``:

        "<method> <what> with D90 <d> x Rx, objective <f> vs <g> for the rule-based loading;
        <advice>"   (or "<method> <what> and loads no seed; <advice>")

    ``what`` says how the method ended (e.g. "stopped at its time limit (time_limit_s=60)"),
    ``advice`` what to use or raise instead. Plans are compared on ``objective`` at the
    problem's own seed strength (``strength_scale`` 1), as ``result.fun`` is scored.
    """
    if not np.any(result.x):
        raise SeedoptError(f"{result.method} {what} and loads no seed; {advice}")
    if proven_optimal:
        result.extra["rule_objective"] = None
        return result
    d90 = float(terms(problem, result.x).d90_gy) / float(problem.prescription_gy)
    if d90 < MIN_D90_OVER_RX:
        raise SeedoptError(
            f"{result.method} {what} with D90 {d90:.2f} x Rx, below {MIN_D90_OVER_RX:g} x Rx: "
            f"not a treatment plan; {advice}"
        )
    rule_fun = float(objective(problem, rule_loading(problem)))
    fun = float(result.fun)
    if fun <= rule_fun + 1e-9 * max(1.0, abs(rule_fun)):
        result.extra["rule_objective"] = rule_fun
        return result
    raise SeedoptError(
        f"{result.method} {what} with D90 {d90:.2f} x Rx, objective {fun:.4g} vs "
        f"{rule_fun:.4g} for {RULE}; {advice}"
    )
