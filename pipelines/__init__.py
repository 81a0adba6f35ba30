"""Pipeline wiring: `tulu3.build(recipe)` gives the KFP pipeline; `local.run` executes it with kfp.local."""
