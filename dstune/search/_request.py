"""What a search is asked (`SearchRequest`) and what it answers (`SearchResult`), and the two ways it stops early."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..catalog import Stack
from ..costmodel import DEFAULT_CONSTANTS, CostConstants
from ..plan import Baseline
from ..record import TrialRow
from ._backends import Backend
from ._calibrate import Observation, Setup
from ._grid import Grid
from ._pick import TIE_TOLERANCE, Picks
from ._space import SearchSpace
from ._storage import HEARTBEAT_S
from ._surrogate import PRIOR_SD_TIME, FitRecord
from ._verdict import Verdict, verdict_of


class StopSearch(Exception):
    """Raised by a progress callback to end the search early (the benchmark's stop rule)."""


INTERRUPTED = "interrupted (Ctrl-C)"
"""The reason a trial ended by Ctrl-C carries."""


class SearchInterrupted(Exception):
    """Ctrl-C during a search: the running trial was ended and marked failed; `run_search` still
    returns the finished trials (with `interrupted` set) so the caller writes their files."""

    def __init__(self, evaluated: int):
        super().__init__(evaluated)
        self.evaluated = evaluated


@dataclass(frozen=True)
class SearchRequest:
    setup: Setup
    space: SearchSpace
    backend: Backend
    storage: str
    study_name: str
    trials: int = 40
    seed: int | None = None
    sampler: str = "dstune"
    single_objective: bool = False
    """Benchmark mode: one objective (samples/s, 0 when it does not fit) so TPE/GP compete fairly."""
    prior: CostConstants = DEFAULT_CONSTANTS
    """The cost model's constants before this study's own trials; its `headroom_fraction` sets the memory cap."""
    shipped: Sequence[Observation] = ()
    max_asks: int | None = None
    """Cap on Optuna asks (proposals off the grid or repeats are free); default 10 x trials."""
    grid: Grid | None = None
    """A grid already built from `space` for this setup (benchmarks reuse one across runs)."""
    global_batch: int | None = None
    """Prompts per PPO iteration (samples per step for SFT/RM); None: the baseline's."""
    tie_tolerance: float = TIE_TOLERANCE
    he_kernels: bool = True
    """Whether the Hybrid Engine's inference kernels run on this stack (cost-model assumption)."""
    interval_sd: float = PRIOR_SD_TIME
    """Spread of log(true / predicted) throughput behind the intervals of simulated figures."""
    interval_note: str = "uncalibrated prior (no published or measured rows for this GPU yet)"
    heartbeat_s: int = HEARTBEAT_S
    """Seconds between a running trial's heartbeats; a trial silent for 3 of them is failed and retried."""
    known_issues: str = "exclude"
    """mark: name the known-broken or risky combinations the picks hit (dstune.doctor); exclude: also
    drop plans that hit a 'broken' one from the candidates."""
    stack: Stack | None = None
    """The stack the plan will run on: its HE verdicts, stack rules and known issues apply (None: a replay
    table's own, dstune.search.read_table_stack, else the installed one, `local`). `stack.transformers_version`
    is the cost model's transformers input."""

    @property
    def headroom(self) -> float:
        return self.prior.headroom_fraction

    @property
    def cap_bytes(self) -> float:
        """The peak a pick may reach: the cost model's own cap, so estimate and search agree on what fits."""
        return self.prior.memory_cap_bytes(self.setup.cluster.gpu.memory_bytes)


@dataclass
class SearchResult:
    request: SearchRequest
    grid: Grid
    baseline: Baseline
    rows: list[TrialRow]
    new_trials: int
    picks: Picks
    history: list[FitRecord]
    notes: list[str]
    wall_s: float
    space: SearchSpace | None = None
    """The space as searched: fixed to the baseline's job unless widened."""
    interrupted: bool = False

    @property
    def pick(self) -> TrialRow | None:
        return self.picks.headline.pick

    @property
    def ranked(self) -> list[TrialRow]:
        return self.picks.headline.ranked

    @property
    def baseline_row(self) -> TrialRow | None:
        return next((r for r in self.rows if r.source == "baseline"), None)

    @property
    def verdict(self) -> Verdict:
        """The one line every output prints about the pick against the baseline."""
        stack = self.request.stack
        return verdict_of(self.picks, stack.label if stack is not None else None, self._pick_broken())

    def _pick_broken(self) -> tuple[str, ...]:
        """Broken known issues the headline pick hits on the target stack (only --known-issues mark keeps one)."""
        pick, stack = self.pick, self.request.stack
        if pick is None or stack is None:
            return ()
        from ..doctor import match_known_issues

        found = match_known_issues(pick.values, self.request.setup.model, stack)
        return tuple(i.id for i in found if i.severity == "broken")
