"""Waiting on many shards at once: ``POST /sluice/wait`` (sluice's own consumer; SLS has no such API).

Why: a consumer following N idle shards with one long-poll PullLogs per shard holds N connections on both
sides (2,000 shards: 2,000 descriptors in the consumer, as many in the hub). Here a consumer process keeps one
*wait session* per project on the hub: the set of (logstore, shard, cursor) it waits on. One long-poll
request per session answers with the shards that have data past their cursor; the consumer then pulls those
with plain, short PullLogs. A session is changed by deltas, so a shard that caught up joins with a request
that names only it, not the whole set.

Protocol (JSON body; the wait in seconds in ``x-sluice-wait``, capped by the hub's ``--max-wait``)::

    {"session": "<1-64 of [A-Za-z0-9_.-]>", "reset": false,
     "add": [[logstore, shard, cursor], ...], "remove": [[logstore, shard], ...]}
    -> {"ready": [[logstore, shard], ...]}

* ``reset`` empties the session first (or creates it); a poll for an unknown session without ``reset``
  answers 404 ``WaitSessionNotExist`` (the hub restarted or dropped it as idle) and the client sends its
  whole set again with ``reset``.
* A shard is *ready* when a PullLogs at its cursor would not just wait: data past the cursor, the shard
  read-only (its end is to be found), gone, or the cursor out of range. Ready shards leave the session and
  are answered; the client adds them again after pulling.
* A newer poll of the same session answers the older one at once (with what is ready by then): a session
  holds at most one waiting request, so a consumer never needs more than one connection parked per session.
* Sessions belong to the access key that made them (the key id is part of the session's name).

Bounds (docs/security.md): ``MAX_WAIT_SHARDS`` shards per session, ``MAX_WAIT_SESSIONS`` sessions; a
session not polled for ``SESSION_IDLE`` seconds is dropped. Work per poll is proportional to what it adds,
removes and what was woken, except a poll that waited its whole time out, which re-checks the session's
shards once (splits, merges and deletions do not wake waiters; they are found within one wait).

This module owns the sessions and the wake-ups; it knows no HTTP beyond parsing the body it is given, and
runs on the event loop only (``wake`` is called there by the hub's commit listener).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Callable

from ..wire import errors as E
from ..wire.cursor import decode_cursor
from .store.base import ShardMeta

__all__ = ["MAX_WAIT_SESSIONS", "MAX_WAIT_SHARDS", "SESSION_IDLE", "ShardWaits", "WaitRequest", "parse_wait_body",
           "store_lookup"]

MAX_WAIT_SHARDS = 20_000
MAX_WAIT_SESSIONS = 1_000
SESSION_IDLE = 120.0

_SESSION = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # fullmatch: "$" would let a trailing newline in
_Key = tuple[str, int]  # (logstore, shard id): a session is about one project
Lookup = Callable[[str, str, int], "ShardMeta | None"]  # (project, logstore, shard) -> current shard or None


def store_lookup(store: Any) -> Lookup:
    """A lookup over a store's in-memory metadata: its current shard record, None if there is none."""
    def lookup(project: str, logstore: str, shard_id: int) -> ShardMeta | None:
        try:
            return store.get_shard(project, logstore, shard_id)  # type: ignore[no-any-return]
        except E.SLSError:  # ProjectNotExist, LogStoreNotExist, ShardNotExist
            return None
    return lookup


def session_not_exist(name: str) -> E.SLSError:
    return E.SLSError(f"wait session {name!r} does not exist (the hub restarted or dropped it as idle); "
                      "send the whole set again with reset", error_code="WaitSessionNotExist", http_status=404)


class WaitRequest:
    """A parsed, validated wait body. Cursors are decoded here; one that does not decode gets seq -1, which
    makes its shard ready at once (the PullLogs that follows reports the bad cursor)."""

    __slots__ = ("session", "reset", "add", "remove")

    def __init__(self, session: str, reset: bool, add: list[tuple[str, int, int]], remove: list[_Key]) -> None:
        self.session = session
        self.reset = reset
        self.add = add
        self.remove = remove


def _entry(item: Any, n: int, what: str) -> list[Any]:
    if not isinstance(item, list) or len(item) != n or not isinstance(item[0], str) \
            or isinstance(item[1], bool) or not isinstance(item[1], int):
        shape = "[logstore, shard, cursor]" if n == 3 else "[logstore, shard]"
        raise E.ParameterInvalid(f"each {what} entry must be {shape}, got {str(item)[:80]!r}")
    return item


def parse_wait_body(data: Any) -> WaitRequest:
    if not isinstance(data, dict):
        raise E.ParameterInvalid("the wait body must be a JSON object")
    session = data.get("session")
    if not isinstance(session, str) or not _SESSION.fullmatch(session):
        raise E.ParameterInvalid("session must be 1-64 of [A-Za-z0-9_.-]")
    reset = data.get("reset", False)
    if not isinstance(reset, bool):
        raise E.ParameterInvalid("reset must be a boolean")
    add_raw, remove_raw = data.get("add", []), data.get("remove", [])
    if not isinstance(add_raw, list) or not isinstance(remove_raw, list):
        raise E.ParameterInvalid("add and remove must be JSON arrays")
    if len(add_raw) + len(remove_raw) > MAX_WAIT_SHARDS:
        raise E.ParameterInvalid(f"at most {MAX_WAIT_SHARDS} shards per wait request")
    add = []
    for item in add_raw:
        ls, shard, cursor = _entry(item, 3, "add")
        if not isinstance(cursor, str):
            raise E.ParameterInvalid("a cursor must be a string")
        try:
            seq = decode_cursor(cursor)
        except E.SLSError:
            seq = -1
        add.append((ls, shard, seq))
    remove = [(e[0], e[1]) for e in (_entry(item, 2, "remove") for item in remove_raw)]
    return WaitRequest(session, reset, add, remove)


class _Session:
    __slots__ = ("project", "entries", "by_uid", "woken", "poll", "last_seen")

    def __init__(self, project: str, now: float) -> None:
        self.project = project
        self.entries: dict[_Key, tuple[ShardMeta | None, int]] = {}
        self.by_uid: dict[int, _Key] = {}
        self.woken: set[_Key] = set()  # entries to check at the next collect
        self.poll: asyncio.Future[None] | None = None  # the waiting request, if any
        self.last_seen = now


class ShardWaits:
    """Wait sessions and their wake-ups. ``lookup`` resolves a shard to its current metadata (None if gone)."""

    def __init__(self, lookup: Lookup, *, max_sessions: int = MAX_WAIT_SESSIONS,
                 max_shards: int = MAX_WAIT_SHARDS, idle: float = SESSION_IDLE) -> None:
        self._lookup = lookup
        self.max_sessions = max_sessions
        self.max_shards = max_shards
        self.idle = idle
        self._sessions: dict[tuple[str | None, str, str], _Session] = {}
        self._watch: dict[int, set[_Session]] = {}  # shard uid -> sessions waiting on it
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    # ------------------------------------------------------------------ bookkeeping
    def _unwatch(self, sess: _Session, key: _Key) -> None:
        meta, _ = sess.entries.pop(key)
        sess.woken.discard(key)
        if meta is not None and sess.by_uid.get(meta.uid) == key:
            del sess.by_uid[meta.uid]
            watchers = self._watch.get(meta.uid)
            if watchers is not None:
                watchers.discard(sess)
                if not watchers:
                    del self._watch[meta.uid]

    def _clear(self, sess: _Session) -> None:
        for key in list(sess.entries):
            self._unwatch(sess, key)

    def _put(self, sess: _Session, key: _Key, seq: int) -> None:
        if key in sess.entries:
            self._unwatch(sess, key)
        meta = self._lookup(sess.project, key[0], key[1])
        sess.entries[key] = (meta, seq)
        sess.woken.add(key)  # checked before the poll waits: data may already be there
        if meta is not None:
            sess.by_uid[meta.uid] = key
            self._watch.setdefault(meta.uid, set()).add(sess)

    def _is_ready(self, sess: _Session, key: _Key) -> bool:
        meta, seq = sess.entries[key]
        if meta is None or not meta.is_writable or seq != meta.end_seq or seq < meta.begin_seq:
            return True
        return self._lookup(sess.project, key[0], key[1]) is not meta  # deleted or recreated since

    def _collect(self, sess: _Session, everything: bool = False) -> list[_Key]:
        keys = list(sess.entries) if everything else list(sess.woken)
        sess.woken.clear()
        ready = [k for k in keys if k in sess.entries and self._is_ready(sess, k)]
        for key in ready:
            self._unwatch(sess, key)
        return ready

    def _sweep(self, now: float) -> None:
        """Drop sessions nobody polled for ``idle`` seconds (their consumer is gone)."""
        for name, sess in list(self._sessions.items()):
            if sess.poll is None and now - sess.last_seen > self.idle:
                self._clear(sess)
                del self._sessions[name]

    # ------------------------------------------------------------------ the API
    async def poll(self, key_id: str | None, project: str, req: WaitRequest, timeout: float) -> list[_Key]:
        """Apply the request's changes, then answer the session's ready shards: at once if any, else when
        one becomes ready, the wait is over, a newer poll of the session arrives, or the hub stops."""
        now = time.monotonic()
        name = (key_id, project, req.session)
        sess = self._sessions.get(name)
        if sess is None:
            if not req.reset:
                raise session_not_exist(req.session)
            if len(self._sessions) >= self.max_sessions:
                self._sweep(now)
                if len(self._sessions) >= self.max_sessions:
                    raise E.ServerBusy(f"the hub holds {self.max_sessions} wait sessions; try again later")
            sess = self._sessions[name] = _Session(project, now)
        elif req.reset:
            self._clear(sess)
        sess.last_seen = now
        for key in req.remove:
            if key in sess.entries:
                self._unwatch(sess, key)
        new = sum(1 for ls, shard, _ in req.add if (ls, shard) not in sess.entries)
        if len(sess.entries) + new > self.max_shards:
            raise E.ParameterInvalid(f"a wait session holds at most {self.max_shards} shards")
        for ls, shard, seq in req.add:
            self._put(sess, (ls, shard), seq)
        if sess.poll is not None and not sess.poll.done():
            sess.poll.set_result(None)  # superseded: the older request answers now
        ready = self._collect(sess)
        if ready or timeout <= 0 or self._closing:
            return ready
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sess.poll = fut
        timed_out = False
        try:
            try:
                async with asyncio.timeout(timeout):
                    await fut
            except TimeoutError:
                timed_out = True
        finally:
            if sess.poll is fut:
                sess.poll = None
            sess.last_seen = time.monotonic()
        return self._collect(sess, everything=timed_out)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def on_commit(self, uids: set[int]) -> None:
        """Store writer thread: data committed on these shards; wake their sessions on the event loop."""
        loop = self._loop
        if loop is not None and self._watch:
            loop.call_soon_threadsafe(self.wake, uids)

    def wake(self, uids: set[int]) -> None:
        """Data was committed on these shards (event loop): mark them and answer their sessions' polls."""
        for uid in uids:
            for sess in self._watch.get(uid, ()):
                sess.woken.add(sess.by_uid[uid])
                if sess.poll is not None and not sess.poll.done():
                    sess.poll.set_result(None)

    def close(self) -> None:
        """The hub is stopping: answer every waiting poll now and every later one at once."""
        self._closing = True
        for sess in self._sessions.values():
            if sess.poll is not None and not sess.poll.done():
                sess.poll.set_result(None)
