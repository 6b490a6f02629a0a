"""Evaluation: real datasets, a harness that runs a spec over them, metrics, plots and reports.

The modules are imported by name (``tts_graph.eval.datasets``, ``tts_graph.eval.harness``, ...):
this package imports none of them, so loading one does not pay for the others.
"""
