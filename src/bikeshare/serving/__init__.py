"""The model endpoint: SageMaker's bring-your-own-container contract plus the product API.

``create_app`` (app.py) builds the FastAPI app around a model provider (models.py: registry aliases
with hot swap, or a folder such as SageMaker's ``/opt/ml/model``): one router per concern under
``routes/`` (ops, scoring, product, alerts), the shared :class:`~bikeshare.serving.state.EndpointState`
on ``app.state``, the edge middleware (edge.py: metrics, API key, body limit), the response models
(schemas.py) and the completed OpenAPI document (openapi.py). ``server.run_server`` runs it on
uvicorn with TCP_NODELAY on every accepted socket, in one process or several workers.
"""
