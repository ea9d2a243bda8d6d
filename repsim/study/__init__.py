"""Studies: a whole fusion-depth experiment from one TOML file (:mod:`~repsim.study.spec`),
run here or on SLURM (:mod:`~repsim.study.execute`), run by run (:mod:`~repsim.study.steps`),
and reported (:mod:`~repsim.study.report`). ``python -m repsim.study STUDY.toml``."""
