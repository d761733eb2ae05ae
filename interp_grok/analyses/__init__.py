"""Analyses over a run's checkpoints: fourier, saliency, ablation, subnetworks.

Each is `analysis(run_or_model, *, options) -> Result`; a Result has `.table` (tidy pandas),
`.save(dir)`, `.load(dir)` and `.plot()`. Import the modules directly:
`from interp_grok.analyses import fourier`.
"""
