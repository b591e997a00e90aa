#!/usr/bin/env python3
"""What auditing every request adds inside a real serving stack: two tritonservers serve the
shipped audited model in PyTorch (examples/triton, fmnist_audited), one with the mint_audit
hooks (every request audited, 1-in-1 sampling) and one without (audit=off); the same client
load is sent to each in alternating rounds, and Triton's request latency (client-side, KServe
v2 HTTP) and throughput are compared as ratios from the same run.

On a small machine that comparison is blurred by the run-to-run noise of two servers, so a
third server measures what the audit adds on the serving thread in process: each audited
forward is paired with a forward of an unhooked copy of the model on the same batch, in
alternating order (the `timing_file` parameter of examples/triton's model), in wall-clock time
and in the serving thread's CPU time. The median of the per-pair differences, against the
unaudited server's p50 request latency, is the audit's share of it.

usage: .venv/bin/python benches/triton_overhead.py [--rounds 10] [--requests 200] [--batch 1]
                                                    [--concurrency 2]
Needs scripts/setup.sh and the mint_audit package in .venv (scripts/python_tests.sh installs
a debug build; `pip install ./bindings/python` a release one: the figures are for a release build).
"""

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.http as http
from bench_host import cpu_flags  # benches/, beside this script

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(work, audit, timing_file=""):
    ports = [free_port() for _ in range(4)]
    params = f"audit={audit} metrics_listen=127.0.0.1:{ports[3]}"
    if timing_file:
        params += f" timing_file={timing_file}"
    env = dict(os.environ, MINT_TRITON_PYTHON=sys.executable, MINT_TRITON_PARAMS=params)
    server = subprocess.Popen(
        [
            "bash",
            os.path.join(ROOT, "examples/triton/start.sh"),
            "fmnist_audited",
            work,
            "--http-port",
            str(ports[0]),
            "--grpc-port",
            str(ports[1]),
            "--metrics-port",
            str(ports[2]),
            "--log-verbose=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{ports[0]}/v2/models/fmnist_audited/ready"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return server, ports
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit(f"tritonserver (audit={audit}) not ready after 180 s")


def stop(server):
    server.terminate()  # Triton unloads the model: finalize() closes the auditor, writes timings
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()


def load(port, images, requests, batch, concurrency, next_id):
    """Sends `requests` requests of `batch` images from `concurrency` clients; latencies in ms."""
    local = threading.local()  # a tritonclient (gevent) client is used by the thread that made it

    def one(i):
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = http.InferenceServerClient(f"127.0.0.1:{port}")
        x = images[(i * batch) % (len(images) - batch) :][:batch]
        inputs = [http.InferInput("image", x.shape, "FP32"), http.InferInput("sample_id", [batch, 1], "UINT64")]
        inputs[0].set_data_from_numpy(x)
        inputs[1].set_data_from_numpy(
            np.arange(next_id + i * batch, next_id + (i + 1) * batch, dtype=np.uint64).reshape(batch, 1)
        )
        t = time.perf_counter()
        client.infer("fmnist_audited", inputs)
        return (time.perf_counter() - t) * 1e3

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(requests)))
    return latencies, requests * batch / (time.perf_counter() - started)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()
    from mint_recipes.data import read_idx  # the checkout's venv imports it (scripts/setup.sh)

    images = (
        read_idx(os.path.join(ROOT, "models/fmnist-memorizing/demo-members-idx3-ubyte")).astype(np.float32) / 255.0
    )[:, None]
    import mint_audit

    with tempfile.TemporaryDirectory() as work:
        servers = {audit: start(os.path.join(work, audit), audit) for audit in ("on", "off")}
        try:
            lat = {"on": [], "off": []}
            rate = {"on": [], "off": []}
            for r in range(args.rounds + 1):
                for audit in ("on", "off") if r % 2 else ("off", "on"):
                    latencies, t = load(
                        servers[audit][1][0], images, args.requests, args.batch, args.concurrency, r << 32
                    )
                    if r > 0:  # round 0 warms both up
                        lat[audit].extend(latencies)
                        rate[audit].append(t)
            mint_port = servers["on"][1][3]
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{mint_port}/metrics").read().decode()
            audited = sum(
                float(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith("mint_samples_audited_total")
            )
        finally:
            for server, _ in servers.values():
                stop(server)
        # The paired measurement, on a server of its own (it runs every forward twice).
        timing_file = os.path.join(work, "timings.json")
        server, ports = start(os.path.join(work, "paired"), "on", timing_file)
        try:
            for r in range(args.rounds + 1):
                load(ports[0], images, args.requests, args.batch, args.concurrency, (100 + r) << 32)
        finally:
            stop(server)
        with open(timing_file) as f:
            timings = json.load(f)
        pairs = [dict(zip(timings["fields"], forward)) for forward in timings["forwards"]]
        pairs = pairs[len(pairs) // (args.rounds + 1) :]  # the first round warms up

    def median_ms(of):
        return statistics.median(of(p) for p in pairs) * 1e3

    unhooked_ms = median_ms(lambda p: p["unhooked_wall_s"])
    audited_ms = median_ms(lambda p: p["audited_wall_s"])
    added_ms = median_ms(lambda p: p["audited_wall_s"] - p["unhooked_wall_s"])
    added_cpu_ms = median_ms(lambda p: p["audited_cpu_s"] - p["unhooked_cpu_s"])
    samples = statistics.mean(p["samples"] for p in pairs)

    def pct(xs, q):
        return float(np.percentile(xs, q))

    print(
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; flags: {cpu_flags()}; "
        f"mint_audit {mint_audit.__version__} (reduce ISA {mint_audit.REDUCE_ISA})"
    )
    print(
        f"load: {args.rounds} alternating rounds x {args.requests} requests of batch {args.batch}, "
        f"{args.concurrency} concurrent clients; every request of the audited server audited "
        f"({int(audited)} samples scored)\n"
    )
    print("| server | p50 ms | p99 ms | samples/s |")
    print("|---|---:|---:|---:|")
    for audit in ("off", "on"):
        p50, p99, median_rate = pct(lat[audit], 50), pct(lat[audit], 99), statistics.median(rate[audit])
        print(f"| audit {audit} | {p50:.3f} | {p99:.3f} | {median_rate:.0f} |")
    print(
        f"| **on / off** | **{pct(lat['on'], 50) / pct(lat['off'], 50):.3f}** | "
        f"**{pct(lat['on'], 99) / pct(lat['off'], 99):.3f}** | "
        f"**{statistics.median(rate['on']) / statistics.median(rate['off']):.3f}** |"
    )
    p50_off = pct(lat["off"], 50)
    print(f"\nIn process, {len(pairs)} forwards (mean {samples:.1f} samples each) paired with an unhooked copy:\n")
    print(
        "| forward ms, unhooked | forward ms, audited | added ms (median of pairs) | added CPU ms (same) "
        "| added / p50 request (audit off) | added CPU / p50 |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {unhooked_ms:.3f} | {audited_ms:.3f} | {added_ms:.3f} | {added_cpu_ms:.3f} "
        f"| **{added_ms / p50_off:.2%}** | {added_cpu_ms / p50_off:.2%} |"
    )


if __name__ == "__main__":
    main()
