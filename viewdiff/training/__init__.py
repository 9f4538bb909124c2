"""Data, training and evaluation: cached face records -> training pairs -> trained pose transformers -> metrics.

`records` (dataset listings, `FaceRecords` and their cache), `datasets` (training pairs, folds, CFP-FP
pairs), `prior` (prior preservation), `multiview` (multi-view batches), `train`, `evaluate`,
`extract` (the three commands: ``python -m viewdiff.training.<name>``), `metrics`.
"""
