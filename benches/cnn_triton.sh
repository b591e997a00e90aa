#!/usr/bin/env bash
# Runs benches/cnn.rs with a local tritonserver serving the shipped CNN head, so that the
# Triton plugin is measured beside the CPU plugin. Needs .venv from scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p mint-backend-cpu -p mint-backend-triton
work="$(mktemp -d)"
port=18900
bash examples/triton/start.sh models/fmnist-memorizing/cnn_head_stage1.onnx "$work" \
  --http-port "$port" --grpc-port $((port + 1)) --metrics-port $((port + 2)) --log-verbose=0 \
  > "$work/tritonserver.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/v2/models/mint_cnn/ready" >/dev/null && break
  sleep 0.5
done
MINT_BENCH_TRITON_URL="http://127.0.0.1:$port" cargo bench --bench cnn
