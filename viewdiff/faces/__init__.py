"""The face pipeline, photo -> `FaceRecord` (no torch): `analyzer.FaceAnalyzer` composes one backend
(`backends`: dlib or an insightface pack) of detectors (`detectors`) and model files (`model_files`),
decodes images (`images`), estimates head pose (`geometry`) and raises `errors.FaceAnalysisError`s
whose messages say the fix. Heavy assets (insightface's mean face, the models) load on first use.
"""
