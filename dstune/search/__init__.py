"""Search: spaces, baseline, backends, the learned objective, our sampler, the Optuna study and the
planner that turns what the user asked into a study."""

from ..catalog import Setup
from ..plan import Baseline, baseline_plan, nearest_script
from ..record import TrialRow
from ._backends import Backend, ProfileBackend, ReplayBackend, SimulateBackend, read_table
from ._calibrate import Calibration, Observation, fit_constants
from ._confirm import DEFAULT_ROUNDS, confirm_pick
from ._elsewhere import stack_comparison
from ._grid import Grid, build_grid, explain
from ._jobspace import resolve_job
from ._pick import TIE_TOLERANCE, BaselineIssue, JobPick, Picks, Speedup, changes, choose, fits, memory_of
from ._planner import BACKENDS, DEFAULT_TRIALS, KNOWN_ISSUES, PreparedSearch, SearchOptions, plan_search
from ._records import STATUSES, Figures, Status, TrialRecord
from ._request import SearchRequest, SearchResult, StopSearch
from ._sampler import PRUNE_BELOW, SurrogateSampler
from ._samplers import SAMPLERS
from ._shipped import shipped_observations
from ._space import EXPLORE_OPTIONS, SPACES_DIR, BatchPolicy, SearchSpace, default_space_path, load_space, plan_key
from ._study import rank, run_search
from ._surrogate import Surrogate
from ._tablestack import read_table_stack
from ._verdict import Verdict, verdict_of

__all__ = [
    "DEFAULT_ROUNDS",
    "BACKENDS",
    "DEFAULT_TRIALS",
    "KNOWN_ISSUES",
    "PreparedSearch",
    "SearchOptions",
    "plan_search",
    "stack_comparison",
    "confirm_pick",
    "EXPLORE_OPTIONS",
    "TIE_TOLERANCE",
    "JobPick",
    "Picks",
    "BaselineIssue",
    "Speedup",
    "Status",
    "changes",
    "choose",
    "fits",
    "resolve_job",
    "PRUNE_BELOW",
    "SAMPLERS",
    "SPACES_DIR",
    "STATUSES",
    "Backend",
    "Baseline",
    "BatchPolicy",
    "Calibration",
    "Figures",
    "Grid",
    "Observation",
    "ProfileBackend",
    "ReplayBackend",
    "SearchRequest",
    "SearchResult",
    "SearchSpace",
    "Setup",
    "SimulateBackend",
    "StopSearch",
    "Surrogate",
    "SurrogateSampler",
    "TrialRecord",
    "TrialRow",
    "Verdict",
    "baseline_plan",
    "build_grid",
    "default_space_path",
    "explain",
    "fit_constants",
    "load_space",
    "memory_of",
    "nearest_script",
    "plan_key",
    "rank",
    "read_table",
    "read_table_stack",
    "run_search",
    "shipped_observations",
    "verdict_of",
]
