"""Forward: every log as one event to a SIEM (Splunk HEC, syslog), checkpointed only once acknowledged."""

from .processor import AckTracker, ForwardProcessor, build_sinks
from .sink import Sink, SinkFailed

__all__ = ["AckTracker", "ForwardProcessor", "Sink", "SinkFailed", "build_sinks"]
