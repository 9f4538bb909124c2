"""The Gradio demo's logic, free of UI code (`app.py` lays out the page): `service` (callbacks, model card,
plot dispatch), `engine` (pose-transformer runs and caches), `examples` (example photos), `plots`
(plotly JSON figures), `gallery` (persistent identities)."""
