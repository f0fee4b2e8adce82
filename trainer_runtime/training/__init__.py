"""How user code trains inside a tracked run: loading and calling it (``user_code``), the Keras
callback and its automatic installation into ``fit`` (``keras_callback``, ``keras_hook``), and
MLflow's own API in user code routed through the run's spool (``routing``, with the MLflow plugins
in ``mlflow_plugins``); ``wrap`` puts them together for every wiring.

May import: core, status, tracking.
"""
