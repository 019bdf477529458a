"""One RouteTableDef per Engine API resource."""

from aiodock.api.routes.containers import routes as container_routes
from aiodock.api.routes.images import routes as image_routes
from aiodock.api.routes.system import routes as system_routes

ALL = (system_routes, container_routes, image_routes)

__all__ = ["ALL", "container_routes", "image_routes", "system_routes"]
