"""Plumbing every layer may use: files and run folders, processes, notebooks, tracking, errors, the GPU install set.

Nothing here knows about R3; it imports no other part of r3kit.
"""
