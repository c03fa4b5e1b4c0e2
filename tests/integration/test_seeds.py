"""Issue #20: the seed programs (../shared/seeds 002 and 004), unchanged except their imports, run against a hub
with sluice's drop-ins (``sluice.consumer`` for ``aliyun.log.consumer``, ``sluice.compat`` for ``aliyun.log``)
and give the output they give with the official SDK.

* Seed 002 (the consumer-group sample: create a logstore, put 20 logs with ``PutLogsRequest``, two
  ``ConsumerWorker`` s, ``list_consumer_group``, ``get_check_point_fixed``, ``list_logstore``) is run twice,
  once with the SDK's imports and once with sluice's; the printed log dicts are the same (the time field aside,
  the logs were written at different moments) and so are the program's status lines.
* Seed 004 (dispatch by topic with ``put_log_raw``; ``worker.start(join=True)``) runs with sluice's imports
  only; what it writes must equal what the SDK's would (each target holds exactly the source's groups of its
  topic, byte for byte), and Ctrl-C (SIGINT) shuts it down cleanly: exit 0, no traceback, and a restart
  forwards only what came after (0 duplicates).
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from sluice.client import Client
from sluice.testing import HubProcess
from sluice.wire.loggroup import parse_group

from ..conftest import unique

SDK_IMPORTS_002 = "from aliyun.log.consumer import *\nfrom aliyun.log import *\n"
SLUICE_IMPORTS_002 = "from sluice.consumer import *\nfrom sluice.compat import *\n"

# Seed 002 as published (its imports replaced by {imports}; the indentation the page lost restored).
SEED_002 = '''
import os
import time
{imports}from threading import RLock
class SampleConsumer(ConsumerProcessorBase):
    shard_id = -1
    last_check_time = 0
    log_results = []
    lock = RLock()
    def initialize(self, shard):
        self.shard_id = shard
    def process(self, log_groups, check_point_tracker):
        for log_group in log_groups.LogGroups:
            items = []
            for log in log_group.Logs:
                item = dict()
                item['time'] = log.Time
                for content in log.Contents:
                    item[content.Key] = content.Value
                items.append(item)
            log_items = dict()
            log_items['topic'] = log_group.Topic
            log_items['source'] = log_group.Source
            log_items['logs'] = items
            with SampleConsumer.lock:
                SampleConsumer.log_results.append(log_items)
                print(log_items)
        current_time = time.time()
        if current_time - self.last_check_time > 3:
            try:
                self.last_check_time = current_time
                check_point_tracker.save_check_point(True)
            except Exception:
                import traceback
                traceback.print_exc()
        else:
            try:
                check_point_tracker.save_check_point(False)
            except Exception:
                import traceback
                traceback.print_exc()
        # None means succesful process
        # if need to roll-back to previous checkpoint,return check_point_tracker.get_check_point()
        return None
    def shutdown(self, check_point_tracker):
        try:
            check_point_tracker.save_check_point(True)
        except Exception:
            import traceback
            traceback.print_exc()
test_item_count = 20
def _prepare_data(client, project, logstore):
    topic = 'python-ide-test'
    source = ''
    for i in range(0, test_item_count):
        logitemList = []  # LogItem list
        contents = [
            ('user', 'magic_user_' + str(i)),
            ('avg', 'magic_age_' + str(i))
        ]
        logItem = LogItem()
        logItem.set_time(int(time.time()))
        logItem.set_contents(contents)
        logitemList.append(logItem)
        request = PutLogsRequest(project, logstore, topic, source, logitemList)
        response = client.put_logs(request)
        print("successfully put logs in logstore")
def sleep_until(seconds, exit_condition=None, expect_error=False):
    if not exit_condition:
        time.sleep(seconds)
        return
    s = time.time()
    while time.time() - s < seconds:
        try:
            if exit_condition():
                break
        except Exception:
            if expect_error:
                continue
        time.sleep(1)
def sample_consumer_group():
    endpoint = os.environ.get('ALIYUN_LOG_SAMPLE_ENDPOINT', 'cn-hangzhou.log.aliyuncs.com')
    accessKeyId = os.environ.get('ALIBABA_CLOUD_ACCESS_KEY_ID', '')
    accessKey = os.environ.get('ALIBABA_CLOUD_ACCESS_KEY_SECRET', '')
    project = os.environ.get('ALIYUN_LOG_SAMPLE_PROJECT', 'ali-test-project-python')
    logstore = 'ali-test-logstore'
    consumer_group = 'consumer-group-1'
    consumer_name1 = "consumer-group-1-A"
    consumer_name2 = "consumer-group-1-B"
    token = ""
    if not logstore:
        logstore = 'consumer_group_test_' + str(time.time()).replace('.', '_')
    assert endpoint and accessKeyId and accessKey and project, ValueError("endpoint/access_id/key and "
                                                                          "project cannot be empty")
    client = LogClient(endpoint, accessKeyId, accessKey, token)
    ret = client.create_logstore(project, logstore, 2, 4)
    print("successfully create logstore")
    time.sleep(60)
    SampleConsumer.log_results = []
    try:
        _prepare_data(client, project, logstore)
        option1 = LogHubConfig(endpoint, accessKeyId, accessKey, project, logstore, consumer_group,
                               consumer_name1, cursor_position=CursorPosition.BEGIN_CURSOR, heartbeat_interval=6,
                               data_fetch_interval=1)
        option2 = LogHubConfig(endpoint, accessKeyId, accessKey, project, logstore, consumer_group,
                               consumer_name2, cursor_position=CursorPosition.BEGIN_CURSOR, heartbeat_interval=6,
                               data_fetch_interval=1)
        print("*** start to consume data...")
        client_worker1 = ConsumerWorker(SampleConsumer, consumer_option=option1)
        client_worker1.start()
        client_worker2 = ConsumerWorker(SampleConsumer, consumer_option=option2)
        client_worker2.start()
        sleep_until(300, lambda: len(SampleConsumer.log_results) >= test_item_count)
        print("*** consumer group status ***")
        ret = client.list_consumer_group(project, logstore)
        print("successfully list consumergroup")
        for c in ret.get_consumer_groups():
            ret = client.get_check_point_fixed(project, logstore, c.get_consumer_group_name())
            print("successfully get checkpoint fixed")
        print("*** stopping workers")
        client_worker1.shutdown()
        client_worker2.shutdown()
    finally:
        ret = client.list_logstore(project, logstore)
        print("successfully list logstore")
    ret = str(SampleConsumer.log_results)
    print("*** get content:")
    print(ret)
    assert 'magic_user_0' in ret and 'magic_age_0' in ret \\
           and 'magic_user_' + str(test_item_count-1) in ret \\
           and 'magic_age_' + str(test_item_count-1) in ret
if __name__ == '__main__':
    sample_consumer_group()
'''

# The seed's wait for the new logstore (time.sleep(60)) is skipped: the hub creates it at once.
SLEEP_SHIM = textwrap.dedent('''
    import runpy, sys, time
    _sleep = time.sleep
    time.sleep = lambda s: _sleep(0 if s >= 30 else s)
    runpy.run_path(sys.argv[1], run_name="__main__")
''')


def _run_002(hub: HubProcess, sdk: Any, tmp_path: Path, imports: str, tag: str) -> tuple[list[str], list[Any]]:
    project = unique(f"seed2{tag}")
    sdk.create_project(project, "seed 002")
    program = tmp_path / f"sample_{tag}.py"
    program.write_text(SEED_002.format(imports=imports))
    env = {**os.environ, "ALIYUN_LOG_SAMPLE_ENDPOINT": hub.endpoint, "ALIBABA_CLOUD_ACCESS_KEY_ID": hub.access_key_id,
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": hub.access_key_secret, "ALIYUN_LOG_SAMPLE_PROJECT": project,
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-c", SLEEP_SHIM, str(program)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{tag}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    if tag != "sdk":  # the SDK's own run ends with a thread traceback at exit (its executor shut down early)
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    status = [ln for ln in lines if not ln.startswith(("{", "["))]
    dicts = [ast.literal_eval(ln) for ln in lines if ln.startswith("{'topic'")]
    return status, dicts


def _normal(dicts: list[Any]) -> Counter[str]:
    """Each printed group with its logs' time fields dropped (the two runs wrote at different moments)."""
    return Counter(repr({**d, "logs": [{k: v for k, v in log.items() if k != "time"} for log in d["logs"]]})
                   for d in dicts)


def test_seed_002_same_output_as_with_the_sdk(hub: HubProcess, sdk: Any, tmp_path: Path) -> None:
    sdk_status, sdk_dicts = _run_002(hub, sdk, tmp_path, SDK_IMPORTS_002, "sdk")
    our_status, our_dicts = _run_002(hub, sdk, tmp_path, SLUICE_IMPORTS_002, "sluice")
    assert our_status == sdk_status
    assert len(sdk_dicts) == 20 and _normal(our_dicts) == _normal(sdk_dicts)
    assert all(isinstance(log["time"], int) for d in our_dicts for log in d["logs"])


# Seed 004 (dispatch_data.py) as published, with sluice's imports; its get_option() body verbatim.
SEED_004 = '''
# encoding: utf8
import os
import logging
from functools import partial
from multiprocessing import current_process

from sluice.compat import LogClient
from sluice.consumer import ConsumerProcessorAdaptor, ConsumerWorker, CursorPosition, LogHubConfig

logging.basicConfig(level=logging.INFO)
logger = logging.getLogger(__name__)


def get_option():
    accessKeyId = os.environ.get('SLS_AK_ID', '')
    accessKey = os.environ.get('SLS_AK_KEY', '')
    endpoint = os.environ.get('SLS_ENDPOINT', '')
    project = os.environ.get('SLS_PROJECT', '')
    logstore = os.environ.get('SLS_LOGSTORE', '')
    to_endpoint = os.environ.get('SLS_ENDPOINT_TO', endpoint)
    to_project = os.environ.get('SLS_PROJECT_TO', project)
    to_logstore1 = os.environ.get('SLS_LOGSTORE_TO1', '')
    to_logstore2 = os.environ.get('SLS_LOGSTORE_TO2', '')
    to_logstore3 = os.environ.get('SLS_LOGSTORE_TO3', '')
    consumer_group = os.environ.get('SLS_CG', '')
    cursor_start_time = "2018-12-26 0:0:0"
    consumer_name = "{0}-{1}".format(consumer_group, current_process().pid)
    option = LogHubConfig(endpoint, accessKeyId, accessKey, project, logstore, consumer_group, consumer_name, cursor_position=CursorPosition.SPECIAL_TIMER_CURSOR, cursor_start_time=cursor_start_time)
    to_client = LogClient(to_endpoint, accessKeyId, accessKey)
    put_method1 = partial(to_client.put_log_raw, project=to_project, logstore=to_logstore1)
    put_method2 = partial(to_client.put_log_raw, project=to_project, logstore=to_logstore2)
    put_method3 = partial(to_client.put_log_raw, project=to_project, logstore=to_logstore3)
    return option, {u'ngnix': put_method1, u'sql_audit': put_method2, u'click': put_method3}


if __name__ == '__main__':
    option, put_methods = get_option()

    def copy_data(shard_id, log_groups):
        for log_group in log_groups.LogGroups:
            # update topic
            if log_group.Topic in put_methods:
                put_methods[log_group.Topic](log_group=log_group)

    logger.info("*** start to consume data...")
    worker = ConsumerWorker(ConsumerProcessorAdaptor, option, args=(copy_data, ))
    worker.start(join=True)
'''

TOPICS = ("ngnix", "sql_audit", "click")


def _pull_all(c: Client, project: str, logstore: str) -> list[bytes]:
    out: list[bytes] = []
    for s in c.list_shards(project, logstore):
        cursor = c.get_cursor(project, logstore, s["shardID"], "begin")
        while True:
            r = c.pull_logs(project, logstore, s["shardID"], cursor)
            if not r.count:
                break
            out += [bytes(g) for g in r.group_bytes()]
            cursor = r.next_cursor
    return out


def _wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.2)


def _write(sdk: Any, project: str, logstore: str, start: int, n: int) -> None:
    from aliyun.log import LogItem, PutLogsRequest

    for i in range(start, start + n):
        topic = (*TOPICS, "other")[i % 4]
        items = [LogItem(timestamp=int(time.time()), contents=[("id", str(i)), ("msg", f"日志 {i} ✓")])
                 for _ in range(1 + i % 3)]
        sdk.put_logs(PutLogsRequest(project, logstore, topic, f"10.0.0.{i % 5}", items))


def test_seed_004_dispatch_with_sluice_imports_and_ctrl_c(hub: HubProcess, sdk: Any, client: Client,
                                                          project: str, tmp_path: Path) -> None:
    sclient, sproject = client, project
    src = unique("s4src")
    targets = {t: unique(f"s4{i}") for i, t in enumerate(TOPICS)}
    sclient.create_logstore(sproject, src, shard_count=2)
    for ls in targets.values():
        sclient.create_logstore(sproject, ls, shard_count=2)
    program = tmp_path / "dispatch_data.py"
    program.write_text(SEED_004)
    env = {**os.environ, "SLS_ENDPOINT": hub.endpoint, "SLS_AK_ID": hub.access_key_id,
           "SLS_AK_KEY": hub.access_key_secret, "SLS_PROJECT": sproject, "SLS_LOGSTORE": src,
           "SLS_LOGSTORE_TO1": targets["ngnix"], "SLS_LOGSTORE_TO2": targets["sql_audit"],
           "SLS_LOGSTORE_TO3": targets["click"], "SLS_CG": "dispatch_data", "PYTHONUNBUFFERED": "1"}

    def routed() -> dict[str, list[bytes]]:
        return {t: _pull_all(sclient, sproject, ls) for t, ls in targets.items()}

    def expected() -> dict[str, Counter[bytes]]:
        groups = _pull_all(sclient, sproject, src)
        return {t: Counter(g for g in groups if parse_group(g, raw=False).Topic == t) for t in TOPICS}

    for run, (start, n) in enumerate(((0, 40), (40, 40))):
        _write(sdk, sproject, src, start, n)
        want = expected()
        log_path = tmp_path / f"dispatch{run}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, str(program)], env=env, cwd=tmp_path, stdout=log,
                                    stderr=subprocess.STDOUT)
        try:
            _wait_for(lambda: proc.poll() is not None or
                      sum(len(g) for g in routed().values()) >= sum(sum(c.values()) for c in want.values()),
                      45, "every routed group")
            assert proc.poll() is None, f"the dispatch program exited:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.5)  # a duplicate would show up now
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            rc = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out = log_path.read_text()
        assert rc == 0, f"Ctrl-C: exit {rc}\n{out[-3000:]}"
        assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]
        got = routed()
        for topic in TOPICS:  # byte for byte what the SDK's put_log_raw would have written, each once
            assert Counter(got[topic]) == want[topic], f"run {run}: {topic} differs"
