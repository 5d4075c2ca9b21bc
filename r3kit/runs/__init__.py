"""Whole runs: the RunConfig and its profiles, the stages as functions, studies over seeds, launching several
processes, and `reproduce`, which runs the notebooks through papermill.
"""
