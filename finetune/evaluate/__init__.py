"""Scoring with the gateway's own confidence, metrics, temperature calibration, plots, and the
evaluation of a trained adapter.
"""
