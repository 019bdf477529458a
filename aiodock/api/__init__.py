"""The Docker Engine API over aiohttp: a thin adapter from HTTP to the engine's backend protocols."""

from aiodock.api.app import TLSConfig, create_app, serve

__all__ = ["TLSConfig", "create_app", "serve"]
