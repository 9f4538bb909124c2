"""The Gradio demo's logic, free of UI code (`app.py` lays out the page): `service` (callbacks), `engine`
(pose-transformer runs and caches), `panels` (what each plot shows, or why it is empty), `plots` (plotly
JSON figures), `gallery` (galleries of identities), `examples` (example photos), `calibration`
(weights and same-person threshold per embedder), `model_card`, `messages` (visitor-facing text),
`allocator` (glibc malloc settings that keep the server's memory flat), `local_server` (app.py in a
subprocess, for tests and benchmarks)."""
