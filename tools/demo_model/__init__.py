"""Making Salon's built-in demo model (engine/demo/salon-demo-shapes): its data set (`shapes.py`), its training
(`python -m tools.demo_model.train --out DIR`) and its evaluation (`python -m tools.demo_model.evaluate`).

Development tools only: the runtime part, the weights and where they lie, is `engine.demo`.
"""
