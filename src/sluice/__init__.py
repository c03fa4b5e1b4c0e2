"""sluice: an SLS-compatible log hub, a fast consumer-group library, and the pipelines built on them.

The public API: the SLS client (``AsyncClient`` and its blocking facade ``Client``), the consumer
(``AsyncConsumer`` with ``ConsumerConfig``, ``Processor``, ``ShardContext``), the lazy batch types
(``Batch``, ``LazyLogGroup``) and the error tree (``SluiceError`` and below). The hub and the pipelines
are used through the ``sluice`` command.
"""

__version__ = "0.1.0"

from .client import AsyncClient, Client, PullResult, RetryPolicy
from .consumer import AsyncConsumer, ConsumerConfig, Processor, ShardContext
from .wire.batch import Batch, LazyLogGroup
from .wire.errors import ConfigError, SLSError, SluiceError, TransportError, WireError

__all__ = [
    "AsyncClient",
    "AsyncConsumer",
    "Batch",
    "Client",
    "ConfigError",
    "ConsumerConfig",
    "LazyLogGroup",
    "Processor",
    "PullResult",
    "RetryPolicy",
    "SLSError",
    "ShardContext",
    "SluiceError",
    "TransportError",
    "WireError",
    "__version__",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "sluice"
del _name, _obj
