"""One RouteTableDef per Engine API resource."""

from aiodock.api.routes.archive import routes as archive_routes
from aiodock.api.routes.build import routes as build_routes
from aiodock.api.routes.containers import routes as container_routes
from aiodock.api.routes.events import routes as event_routes
from aiodock.api.routes.exec import routes as exec_routes
from aiodock.api.routes.images import routes as image_routes
from aiodock.api.routes.networks import routes as network_routes
from aiodock.api.routes.stats import routes as stats_routes
from aiodock.api.routes.swarm import routes as swarm_routes
from aiodock.api.routes.system import routes as system_routes
from aiodock.api.routes.volumes import routes as volume_routes

ALL = (system_routes, container_routes, image_routes, network_routes, exec_routes, event_routes, volume_routes,
       archive_routes, stats_routes, build_routes, swarm_routes)

__all__ = ["ALL", "archive_routes", "build_routes", "container_routes", "event_routes", "exec_routes", "image_routes", "network_routes",
           "stats_routes", "swarm_routes", "system_routes", "volume_routes"]
