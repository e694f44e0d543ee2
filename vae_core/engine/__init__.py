"""The math and the models: configs, the model-family protocol and registry, objectives,
evaluation, the optimiser's schedule and device choice. Nothing here writes files."""
