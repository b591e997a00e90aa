"""A real serving stack, end to end: tritonserver (from the nvidia-pytriton wheel) serves the
shipped audited model in PyTorch from examples/triton (python backend), audited in process by
mint_audit's hooks; a tritonclient sends members and non-members over KServe v2 HTTP; a real
Prometheus scrapes Triton's metrics and mint's endpoint. Checked through Prometheus's query
API: submitted = audited + dropped, Triton's request count, and the member/non-member flags
equal to what the library's own runtime (`mint eval`, as in the C demo) gives the same samples
at the configured threshold."""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
from conftest import MEMORIZING, ROOT, SHAPES, read_idx_images, require

N = 96
BATCH = 16
NON_MEMBER_IDS = 1 << 32


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} not ready after {seconds} s")


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


def query(prometheus, expr):
    _, body = get(f"http://127.0.0.1:{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    result = json.loads(body)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@pytest.fixture
def stack(tmp_path):
    try:
        import pytriton  # noqa: F401
        import tritonclient.http  # noqa: F401
    except ImportError:
        require("tritonclient and nvidia-pytriton (scripts/setup.sh)")
    prometheus_bin = shutil.which("prometheus")
    if prometheus_bin is None:
        require("prometheus (Debian's package)")
    http, grpc, triton_metrics, mint_metrics, prometheus = (free_port() for _ in range(5))
    log = open(tmp_path / "tritonserver.log", "w")
    env = dict(
        os.environ, MINT_TRITON_PYTHON=sys.executable, MINT_TRITON_PARAMS=f"metrics_listen=127.0.0.1:{mint_metrics}"
    )
    server = subprocess.Popen(
        [
            "bash",
            os.path.join(ROOT, "examples/triton/start.sh"),
            "fmnist_audited",
            str(tmp_path / "triton"),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(triton_metrics),
            "--log-verbose=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n"
        f"  - job_name: triton\n    static_configs: [{{targets: ['127.0.0.1:{triton_metrics}']}}]\n"
        f"  - job_name: mint\n    static_configs: [{{targets: ['127.0.0.1:{mint_metrics}']}}]\n"
    )
    prom = subprocess.Popen(
        [
            prometheus_bin,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("tritonserver", lambda: get(f"http://127.0.0.1:{http}/v2/models/fmnist_audited/ready")[0] == 200, 180)
        wait_for("prometheus", lambda: get(f"http://127.0.0.1:{prometheus}/-/ready")[0] == 200, 60)
        yield {"http": http, "prometheus": prometheus}
    finally:
        for process in (server, prom):
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
        print((tmp_path / "tritonserver.log").read_text()[-3000:])


def send(client, images, first_id, cohort):
    import tritonclient.http as http

    for start in range(0, len(images), BATCH):
        x = images[start : start + BATCH]
        n = len(x)
        inputs = [
            http.InferInput("image", x.shape, "FP32"),
            http.InferInput("sample_id", [n, 1], "UINT64"),
            http.InferInput("cohort", [n, 1], "BYTES"),
        ]
        inputs[0].set_data_from_numpy(x)
        inputs[1].set_data_from_numpy(np.arange(first_id + start, first_id + start + n, dtype=np.uint64).reshape(n, 1))
        inputs[2].set_data_from_numpy(np.array([[cohort.encode()]] * n, dtype=object))
        logits = client.infer("fmnist_audited", inputs).as_numpy("logits")
        assert logits.shape == (n, 10) and np.isfinite(logits).all()


def expected_flags(mint_bin, tmp_path, members, non_members):
    """Members and non-members flagged by the library's own runtime at the configured threshold."""
    out = tmp_path / "eval"
    subprocess.run(
        [
            mint_bin,
            "eval",
            "--config",
            os.path.join(MEMORIZING, "auditor.json"),
            "--members",
            members,
            "--non-members",
            non_members,
            "--limit",
            str(N),
            "--out-dir",
            str(out),
            "--allow-shift",
            "--bootstrap",
            "10",
        ],
        check=True,
        capture_output=True,
    )
    with open(os.path.join(MEMORIZING, "auditor.json")) as f:
        threshold = json.load(f)["head"]["threshold"]
    flags = {"member": 0, "non_member": 0}
    with open(out / "scores.csv") as f:
        for row in csv.DictReader(f):
            flags[row["set"]] += float(row["score"]) >= threshold
    return flags


def test_a_triton_server_audits_every_request_and_prometheus_sees_it(stack, mint_bin, tmp_path):
    import tritonclient.http as http

    members_path = os.path.join(MEMORIZING, "demo-members-idx3-ubyte")
    non_members_path = os.path.join(MEMORIZING, "demo-non-members-idx3-ubyte")
    as_input = lambda p: (read_idx_images(p)[:N].astype(np.float32) / 255.0)[:, None]  # noqa: E731
    client = http.InferenceServerClient(f"127.0.0.1:{stack['http']}")
    send(client, as_input(members_path), 0, "suspect")
    send(client, as_input(non_members_path), NON_MEMBER_IDS, "reference")
    want = expected_flags(mint_bin, tmp_path, members_path, non_members_path)

    p = stack["prometheus"]
    wait_for(
        "every sample audited, as Prometheus sees it",
        lambda: query(p, "sum(mint_samples_audited_total)") == 2 * N
        and query(p, "sum(nv_inference_request_success)") is not None,
        60,
    )
    submitted = query(p, "sum(mint_samples_submitted_total)")
    audited = query(p, "sum(mint_samples_audited_total)")
    dropped = query(p, "sum(mint_samples_dropped_total)")
    assert submitted == audited + dropped == 2 * N and dropped == 0
    wait_for(
        "Triton's request count",
        lambda: query(p, 'sum(nv_inference_request_success{model="fmnist_audited"})') == 2 * N / BATCH,
        30,
    )
    members_flagged = query(p, 'mint_samples_audited_total{cohort="suspect",verdict="member"}')
    non_members_flagged = query(p, 'mint_samples_audited_total{cohort="reference",verdict="member"}')
    assert (members_flagged, non_members_flagged) == (want["member"], want["non_member"])
    # The memorizing model's members are flagged far more often than its non-members.
    assert members_flagged > non_members_flagged


def test_the_wheel_links_the_triton_backend(tmp_path):
    """A CNN head served by tritonserver, scored through the Triton backend linked into the
    wheel (no plugin file): the same scores as the CPU backend, also linked, gives in process."""
    try:
        import pytriton  # noqa: F401
    except ImportError:
        require("nvidia-pytriton (scripts/setup.sh)")
    import mint_audit

    http, grpc, metrics = free_port(), free_port(), free_port()
    log = open(tmp_path / "tritonserver.log", "w")
    server = subprocess.Popen(
        [
            "bash",
            os.path.join(ROOT, "examples/triton/start.sh"),
            os.path.join(MEMORIZING, "cnn_head_stage1.onnx"),
            str(tmp_path / "triton"),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
            "--log-verbose=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, MINT_TRITON_PYTHON=sys.executable),
    )
    try:
        wait_for("tritonserver", lambda: get(f"http://127.0.0.1:{http}/v2/models/mint_cnn/ready")[0] == 200, 120)
        with open(os.path.join(MEMORIZING, "auditor-cnn.json")) as f:
            config = json.load(f)
        config.pop("metrics", None)
        rng = np.random.default_rng(3)
        taps = {
            name: (rng.random((24,) + shape, dtype=np.float32) * 4.0)
            for name, shape in zip(["stage1", "stage2", "stage3", "stage4"], SHAPES)
        }
        taps["logits"] = rng.standard_normal((24, 10), dtype=np.float32)

        def scores(backend):
            got = {}
            with mint_audit.Auditor(
                dict(config, head=dict(config["head"], backend=backend)),
                base_dir=MEMORIZING,
                on_results=lambda rs: got.update((r.sample_id, r.score) for r in rs),
            ) as auditor:
                assert auditor.head_kind == "cnn"
                auditor.submit(list(range(24)), taps)
            return got

        cpu = scores(config["head"]["backend"])
        triton = scores(
            {
                "library": "libmint_backend_triton.so",
                "config": {
                    "url": f"http://127.0.0.1:{http}",
                    "model": "mint_cnn",
                    "sha256": config["head"]["backend"]["config"]["sha256"],
                },
            }
        )
        assert sorted(cpu) == sorted(triton) == list(range(24))
        worst = max(abs(cpu[i] - triton[i]) for i in cpu)
        assert worst < 1e-4, f"Triton's scores differ from the CPU backend's by {worst}"
    finally:
        server.terminate()
        server.wait(30)
