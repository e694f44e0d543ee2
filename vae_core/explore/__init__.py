"""Explorer functions the pages call: codes, reconstructions, samples, traversals,
interpolations and the decoded manifold (``codes``); 2-D projections and neighbours
(``projection``); display grids (``display``); browser-side decoding payloads
(``live_decode``). They run in the caller's process on a loaded model, never train and
never import streamlit."""
from .codes import (
    BATCH,
    Codes,
    LatentSummary,
    Reconstruction,
    Scores,
    best_and_worst,
    decode,
    encode,
    interpolate,
    interpolation_strip,
    latent_summary,
    manifold_codes,
    manifold_grid,
    manifold_values,
    posterior_means,
    rank_by_loss,
    reconstruct,
    sample_prior,
    score_examples,
    traversal_codes,
    traversal_grid,
    traverse_one,
    worst_and_best,
)
from .display import tile, upscale
from .test_set import EncodedTestSet, encoded_test_set
from .projection import (
    TSNE_MAX_POINTS,
    PcaAxes,
    Projection,
    has_spread,
    nearest_neighbours,
    pca_fit,
    place_new_points_tsne,
    project_2d,
    sigma_ellipses,
)

__all__ = [
    "BATCH", "Codes", "LatentSummary", "PcaAxes", "Projection", "Reconstruction", "best_and_worst", "decode", "has_spread",
    "encode", "interpolate", "interpolation_strip", "latent_summary", "manifold_codes", "manifold_grid",
    "manifold_values", "nearest_neighbours", "pca_fit", "place_new_points_tsne", "project_2d", "rank_by_loss",
    "reconstruct", "sample_prior", "sigma_ellipses", "tile", "traversal_codes", "traversal_grid", "traverse_one",
    "upscale", "EncodedTestSet", "encoded_test_set",
    # whole sets a batch at a time, keeping scores or codes, never images
    "Scores", "TSNE_MAX_POINTS", "posterior_means", "score_examples", "worst_and_best",
]
