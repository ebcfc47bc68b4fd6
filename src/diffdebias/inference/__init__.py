"""Group inference: who is bias-conflicting? (kept apart from the trainers that use groups)"""
