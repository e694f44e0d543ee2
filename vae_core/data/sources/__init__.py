"""The sources a dataset spec can name. Each module offers ``plan_*`` functions that check
their argument and say what they will build (:class:`~vae_core.data.sources.plan.Plan`),
and ``*_status`` functions that tell whether the source can be loaded on this machine."""
