"""Evaluation (docs/method.md, docs/evaluation.md).

extract (the only part that runs a model), class_stats (old-class centres and radii), search
(exact inner-product ranking), metrics (mAP, mP@k, GLDv2 mAP@k and compatibility scores, pure
numpy), protocol (self-, cross- and partial-backfill tests per benchmark) and report (the paper's
tables).
"""
