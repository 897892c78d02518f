"""Serve suite envs over the OpenEnv protocol (``python -m envs serve``), and the wire format they speak.

The server needs the ``server`` extra (FastAPI, uvicorn, websockets); importing this package does not
load it: ``envs.server.app.create_app`` does. The remote client is ``envs.remote.RemoteEnv``.
"""
