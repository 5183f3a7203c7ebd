"""A grpcio client of the node's DaemonService on its Unix control socket: GetStatus,
StreamMetrics, deployments, logs, the bounds on caller numbers, the jobs RPCs, an
UNIMPLEMENTED RPC with its reason, and finally Shutdown, which stops the node.

Environment (set by tests/tests/control.rs): CYXWIZ_CONTROL_SOCKET (the socket path),
CYXWIZ_NODE_NAME (the node's configured name), CYXWIZ_PROTO_DIR.
"""

import os
import time

import grpc
import pytest

SOCKET = os.environ["CYXWIZ_CONTROL_SOCKET"]
NAME = os.environ["CYXWIZ_NODE_NAME"]

import stubs  # noqa: E402,F401  (generates the cyxwiz package)
from cyxwiz import daemon_pb2, daemon_pb2_grpc  # noqa: E402


@pytest.fixture(scope="module")
def daemon():
    # grpcio sends the socket path as :authority, which HTTP/2 servers built on h2 (tonic)
    # refuse as malformed (PROTOCOL_ERROR); "localhost" is the convention for Unix sockets.
    with grpc.insecure_channel("unix:" + SOCKET, options=[("grpc.default_authority", "localhost")]) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield daemon_pb2_grpc.DaemonServiceStub(ch)


def test_get_status(daemon):
    s = daemon.GetStatus(daemon_pb2.GetStatusRequest(), timeout=10)
    assert s.node_name == NAME
    assert s.version
    assert s.node_id
    assert s.uptime_seconds >= 0
    assert s.central_server_status == daemon_pb2.CONNECTION_STATUS_DISCONNECTED
    assert s.central.state == "standalone"
    assert list(s.grpc_ports) == []
    assert s.deployment_counts.total == 0
    assert s.plugins_failed == 0


def test_stream_metrics(daemon):
    stream = daemon.StreamMetrics(daemon_pb2.StreamMetricsRequest(interval_ms=300), timeout=30)
    updates = []
    for update in stream:
        updates.append(update)
        if len(updates) == 3:
            break
    stream.cancel()
    for u in updates:
        assert u.timestamp > 1_700_000_000
        assert 0.0 <= u.metrics.cpu_usage <= 100.0
        assert u.metrics.ram_total_bytes > 0
        assert 0 < u.metrics.ram_used_bytes <= u.metrics.ram_total_bytes
        assert 0.0 < u.metrics.ram_usage <= 100.0
    m = daemon.GetMetrics(daemon_pb2.GetMetricsRequest(), timeout=10)
    assert m.metrics.ram_total_bytes == updates[0].metrics.ram_total_bytes
    assert len(m.cpu_history) >= 1


def test_stream_interval_is_bounded(daemon):
    for bad in (1, 249, -5, 3_600_001):
        with pytest.raises(grpc.RpcError) as e:
            next(iter(daemon.StreamMetrics(daemon_pb2.StreamMetricsRequest(interval_ms=bad), timeout=10)))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "interval_ms must be between 250 and 3600000" in e.value.details()


def test_deployments_and_logs(daemon):
    assert list(daemon.ListDeployments(daemon_pb2.ListDeploymentsRequest(), timeout=10).deployments) == []
    with pytest.raises(grpc.RpcError) as e:
        daemon.GetDeploymentStatus(daemon_pb2.GetDeploymentStatusRequest(deployment_id="nope"), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    logs = daemon.GetLogs(daemon_pb2.GetLogsRequest(limit=50), timeout=10).entries
    assert any("listening" in l.message or "starting" in l.message for l in logs), logs
    assert all(l.level in ("error", "warn", "info", "debug", "trace") for l in logs)
    with pytest.raises(grpc.RpcError) as e:
        daemon.GetLogs(daemon_pb2.GetLogsRequest(limit=1_000_000), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        daemon.GetLogs(daemon_pb2.GetLogsRequest(level_filter="loud"), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_jobs_answer_and_unimplemented_says_why(daemon):
    jobs = daemon.ListJobs(daemon_pb2.ListJobsRequest(include_completed=True), timeout=10)
    assert list(jobs.jobs) == []
    with pytest.raises(grpc.RpcError) as e:
        daemon.GetJob(daemon_pb2.GetJobRequest(job_id="not-a-uuid"), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        daemon.GetEarnings(daemon_pb2.GetEarningsRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "earnings" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        daemon.JoinPool(daemon_pb2.JoinPoolRequest(pool_address="x"), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_shutdown_last(daemon):
    r = daemon.Shutdown(daemon_pb2.ShutdownRequest(graceful=True), timeout=10)
    assert r.success
    deadline = time.time() + 15
    while os.path.exists(SOCKET) and time.time() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(SOCKET), "the node removes its socket when it stops"
