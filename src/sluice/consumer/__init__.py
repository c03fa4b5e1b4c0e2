"""Consumer-group consumers: the native asyncio ``AsyncConsumer``, and drop-in replacements for the official
SDK's ``ConsumerWorker`` family (switch a program by changing its imports)."""

from .compat import (
    CheckPointTracker,
    ConsumerJsonProcessorBase,
    ConsumerProcessorAdaptor,
    ConsumerProcessorBase,
    ConsumerWorker,
    CursorPosition,
    LogHubConfig,
)
from .config import ConsumerConfig
from .memory import tune_allocator
from .processor import Processor, ShardContext
from .worker import AsyncConsumer, ByteBudget

__all__ = [
    "AsyncConsumer",
    "ByteBudget",
    "CheckPointTracker",
    "ConsumerConfig",
    "ConsumerJsonProcessorBase",
    "ConsumerProcessorAdaptor",
    "ConsumerProcessorBase",
    "ConsumerWorker",
    "CursorPosition",
    "LogHubConfig",
    "Processor",
    "ShardContext",
    "tune_allocator",
]
