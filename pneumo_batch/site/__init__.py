"""A new hospital's labelled films: validate a model on them, adapt its operating points, compare two models.

``labelled`` reads the films and scores them; ``validation`` says whether the
screening promise holds there; ``thresholds`` re-chooses an operating point
safely from a few hundred films; ``comparison`` pits a challenger against the
live model on the same hold-out films; ``adaptation`` writes the adapted
model directory with its lineage. The models folder's live pointer and audit
log are :mod:`pneumo_batch.registry`'s.
"""
