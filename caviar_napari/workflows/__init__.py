"""File-level operations shared by the ``caviar`` CLI, the napari view-models and the studies.

One module per step; each takes a typed options dataclass and returns a summary dataclass
(:class:`~caviar_napari.workflows.summary.StepSummary`: the file written, the report lines and
the warnings).  A workflow checks its output before it computes anything
(:class:`caviar_napari.io.outputs.OutputTarget`), validates every input before it writes, and
writes nothing when it fails.

============================  ==========================================================
``simulate.run_simulate``     :class:`SimulateOptions` → :class:`SimulateSummary`
``reconstruct.run_reconstruct``  :class:`ReconstructOptions` → :class:`ReconstructSummary`
                              (``reconstruct.reconstruct_steps`` yields the engine's progress)
``atoms.run_atoms``           :class:`AtomsOptions` → :class:`AtomsSummary`
``correlations.run_correlations``  :class:`CorrelationsOptions` → :class:`CorrelationsSummary`
``dispersion.run_dispersion``  :class:`DispersionOptions` → :class:`DispersionSummary`
``study.run_study``           the simulated validation study (``caviar validate``;
                              its sizes and cases in ``study_config``)
============================  ==========================================================

The comparisons with a known truth (pair sets, LSM/CSM, rms, offset, state recovery, field of
view) moved to :mod:`caviar_napari.analysis.truth`; ``truth_metrics`` is a re-export shim for
code that still imports the old path.
"""
