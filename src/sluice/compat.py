"""The drop-in for ``aliyun.log``: change ``from aliyun.log import ...`` to ``from sluice.compat import ...``
(and ``aliyun.log.consumer`` to ``sluice.consumer``). ``LogClient``, ``LogItem``, ``PutLogsRequest``,
``LogException`` and the response classes, implemented in ``sluice.client.compat`` (docs/consumer.md lists
the calls covered)."""

from .client.compat import *  # noqa: F403
from .client.compat import __all__  # noqa: F401
