"""Run directories and the processes that write them: the on-disk contract (``rundir``),
the training worker (``trainer``), the run manager that starts and stops workers
(``manager``) and sweeps of runs (``sweeps``)."""
