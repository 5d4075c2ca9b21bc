"""The CPU students: small character models taught a task and the R3 conversation by supervised learning,
so R3 has something with partial skill to train offline.
"""
