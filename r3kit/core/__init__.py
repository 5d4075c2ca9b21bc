"""R3 itself, read first: episodes (attempt, verify, reflect, retry), failure mining, the arms and their names,
the trainer (one rollout per arm, the reward as a pure function of the retry), and R3 for a plain TRL trainer.
"""
