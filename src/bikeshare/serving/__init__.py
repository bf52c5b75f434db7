"""The model endpoint: SageMaker's bring-your-own-container contract plus the product API.

``create_app`` (app.py) builds the FastAPI app around a model provider (models.py: registry aliases
with hot swap, or a folder such as SageMaker's ``/opt/ml/model``); ``server.run_server`` runs it on
uvicorn with TCP_NODELAY on every accepted socket, in one process or several workers.
"""
