"""Kubernetes manifests and rules, as plain data.

Nothing here imports the ``kubernetes`` client: :mod:`agentic.k8s.jobs` builds Job manifests
as dicts and :mod:`agentic.k8s.scaler_rule` decides how many worker Jobs to start. The code
that talks to an API server (the ``kubernetes`` backend, ``agentic scaler``) imports the
client lazily and sends these dicts as they are.
"""
