"""Pruning at initialisation: SynFlow and its baselines, layer collapse (chapters 2 and 3).

A pruning method *scores* the prunable parameters and *masks* the lowest scores (notes section 3.1.1).
The package keeps one concern per module; this file re-exports the public API, so chapters write
``from utils.pruning import prune, score, ...``:

* :mod:`utils.pruning.scores`: the five scorers on one interface, :func:`score` (``random``,
  ``magnitude``, ``snip``, ``grasp``, ``synflow``), and the closed forms of eqs 6-7;
* :mod:`utils.pruning.masks`: from scores to masks (:func:`select_masks`), Algorithm 1
  (:func:`prune`), densities, training a pruned network (:func:`train_pruned`);
* :mod:`utils.pruning.collapse`: input-output paths, the two collapse criteria, maximal and critical
  compression, the compression sweep;
* :mod:`utils.pruning.compare`: comparing masks up to permutations of hidden units;
* :mod:`utils.pruning.figures`: the chapter's plotting functions.

A mask follows the book's one convention (:func:`utils.masking.check_masks`): ``{"fc1.weight": 0/1
tensor of the weight's shape}``. Model builders and the list of prunable layers live in
:mod:`utils.models` and are re-exported here.
"""

from ..masking import Masks, apply_masks_, check_masks
from ..models import (PRUNABLE_TYPES, digits_convnet, kaiming_init, prunable_layers, prunable_names,
                      zero_biases)
from .collapse import (CRITERIA, critical_compression, find_critical, is_collapsed, max_compression,
                       path_count, sweep)
from .compare import canonical_masks, jaccard, mask_agreement
from .figures import (METHOD_COLORS, plot_accuracy_vs_compression, plot_collapse_sweep,
                      plot_controls, plot_layer_profile, plot_method_layers, plot_per_layer)
from .masks import (RESCALES, SCHEDULES, activation_scales, global_density, layer_density, prune,
                    rescale_to_dense_, select_masks, top_direction_share, train_pruned)
from .scores import (GRASP_TEMPERATURE, METHODS, SCORERS, grasp_scores, magnitude_scores, random_scores, score,
                     snip_scores, synflow_objective, synflow_score_formula, synflow_scores)

__all__ = [
    # scores
    "METHODS", "SCORERS", "GRASP_TEMPERATURE", "score", "random_scores", "magnitude_scores", "snip_scores",
    "grasp_scores", "synflow_scores", "synflow_objective", "synflow_score_formula",
    # masks
    "Masks", "check_masks", "apply_masks_", "SCHEDULES", "select_masks", "prune", "layer_density",
    "global_density", "RESCALES", "train_pruned", "activation_scales",
    "top_direction_share", "rescale_to_dense_",
    # collapse
    "CRITERIA", "path_count", "is_collapsed", "max_compression", "sweep", "critical_compression",
    "find_critical",
    # compare
    "canonical_masks", "jaccard", "mask_agreement",
    # figures
    "METHOD_COLORS", "plot_layer_profile", "plot_collapse_sweep", "plot_method_layers",
    "plot_accuracy_vs_compression", "plot_controls", "plot_per_layer",
    # models (re-exported from utils.models)
    "PRUNABLE_TYPES", "prunable_layers", "prunable_names", "zero_biases", "kaiming_init", "digits_convnet",
]
