"""Findings per disc level: localise L3-L4, L4-L5 and L5-S1, grade each disc (Pfirrmann 1-5), gate the input.

Django-free. ``discs`` holds the level geometry and targets, ``localization`` the heatmap localiser,
``grading`` the per-disc VGG / INVGG graders, ``gate`` the refusal of non-lumbar input, ``calibration``
and ``metrics`` the figures, ``pipeline`` the end-to-end analysis of one scan.
"""
