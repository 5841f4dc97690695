"""Evaluation (docs/method.md, docs/evaluation.md).

extract (the only part that runs a model), class_stats (old-class centres and radii), search
(exact inner-product ranking), metrics (mAP, mP@k, GLDv2 mAP@k, own-set mAP / mAP@k / Recall@k and
compatibility scores, pure numpy), sets (one interface for every benchmark family: self-, cross-
and partial-backfill tests, compatibility matrices), protocol (the older per-family entry points,
thin wrappers over sets) and report (the paper's tables).
"""
