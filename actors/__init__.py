"""actorflow's task system: supervised pykka actors behind an async client."""

from loguru import logger

__all__: list[str] = []

logger.disable("actors")
