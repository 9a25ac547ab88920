"""The one seam for engines: each :class:`~pneumo_batch.scoring.types.Engine` names a module with an ``ENGINE``.

An engine takes a :class:`~pneumo_batch.scoring.types.ScoreRequest` and
returns a :class:`~pneumo_batch.scoring.types.ScoreSummary`, scoring every
row through :func:`~pneumo_batch.scoring.rows.score_rows` and using only the
scoring package's public names. Engine modules are imported when chosen, so
an engine's heavy dependency (Ray) costs nothing to the others. A new engine
is a member of ``Engine``, a module here and one line in :data:`ENGINE_MODULES`.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from pneumo_batch.scoring.types import Engine, ScoreRequest, ScoreSummary


class ScoringEngine(Protocol):
    def score(self, request: ScoreRequest) -> ScoreSummary:
        """Score every row of ``request.input_path`` into ``request.out``."""
        ...


ENGINE_MODULES: dict[Engine, str] = {
    Engine.LOCAL: "pneumo_batch.scoring.engines.local",
    Engine.RAY: "pneumo_batch.scoring.engines.ray",
}


def engine_for(engine: Engine) -> ScoringEngine:
    """The engine registered for ``engine``."""
    module = importlib.import_module(ENGINE_MODULES[engine])
    found: ScoringEngine = module.ENGINE
    return found
