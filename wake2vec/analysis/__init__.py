"""Measuring what training did: embedding geometry, generation probes, figures, the run report,
trajectories over training and re-analysis of a finished run."""
