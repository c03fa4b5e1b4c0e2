"""The SLS API's handlers, one module per resource (projects, logstores, shards, logs, consumer groups).

Each handler is ``async def handler(ctx: ApiContext, req: Request) -> web.StreamResponse``; which request
reaches which handler, under which API name and access class, is decided only by ``hub/routes.py``.
"""
