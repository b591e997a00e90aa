#!/usr/bin/env bash
# Starts NVIDIA Triton (the tritonserver binary bundled in the `nvidia-pytriton` wheel, which
# runs CPU-only where there is no GPU) serving one model of model_repository/:
# - a CNN MINT head (`mint_cnn`), for mint-audit's Triton backend plugin, given its ONNX file;
# - or `fmnist_audited`: the shipped audited model in PyTorch, audited in process by the
#   mint_audit package through forward hooks (its Python must have mint_audit installed).
#
# usage: examples/triton/start.sh HEAD.onnx|fmnist_audited WORK_DIR [tritonserver options...]
#   e.g. examples/triton/start.sh models/fmnist-memorizing/cnn_head_stage1.onnx /tmp/triton \
#          --http-port 8000 --grpc-port 8001 --metrics-port 8002
# Needs a Python (MINT_TRITON_PYTHON, default .venv/bin/python) with nvidia-pytriton and
# onnxruntime installed (scripts/setup.sh makes one). On a GPU machine, install
# onnxruntime-gpu there and set instance_group to KIND_GPU in config.pbtxt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
head="$1"; work="$2"; shift 2
python="${MINT_TRITON_PYTHON:-$here/../../.venv/bin/python}"
site="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
triton="$site/pytriton/tritonserver"
pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
[ -x "$triton/bin/tritonserver" ] || { echo "no tritonserver in $triton: pip install nvidia-pytriton" >&2; exit 1; }

# A backend directory whose python backend has the stub for this Python.
mkdir -p "$work/backends/python" "$work/repository"
cp -f "$triton/backends/python/"* "$work/backends/python/" 2>/dev/null || true
cp -f "$triton/python_backend_stubs/$pyver/triton_python_backend_stub" "$work/backends/python/"

# The model repository: the example's model with this site-packages (and head, or checkout).
case "$head" in
  fmnist_audited) model=fmnist_audited ;;
  *) model=mint_cnn ;;
esac
rm -rf "$work/repository/$model"
cp -r "$here/model_repository/$model" "$work/repository/"
[ "$model" = mint_cnn ] && cp "$head" "$work/repository/mint_cnn/1/cnn_head.onnx"
repo="$(cd "$here/../.." && pwd)"
sed -i -e "s|key: \"site_packages\", value: { string_value: \"\" }|key: \"site_packages\", value: { string_value: \"$site\" }|" \
  -e "s|key: \"repo\", value: { string_value: \"\" }|key: \"repo\", value: { string_value: \"$repo\" }|" \
  "$work/repository/$model/config.pbtxt"
# MINT_TRITON_PARAMS="key=value ...": the model's parameters to change (metrics_listen=, audit=off).
for kv in ${MINT_TRITON_PARAMS:-}; do
  sed -i "s|key: \"${kv%%=*}\", value: { string_value: \"[^\"]*\" }|key: \"${kv%%=*}\", value: { string_value: \"${kv#*=}\" }|" \
    "$work/repository/$model/config.pbtxt"
done

# The stub links libpython of this Python.
libdir="$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
export LD_LIBRARY_PATH="$libdir:$triton/../../nvidia_pytriton.libs:${LD_LIBRARY_PATH:-}"
exec "$triton/bin/tritonserver" --model-repository="$work/repository" --backend-directory="$work/backends" \
  --exit-on-error=true --http-address=127.0.0.1 --grpc-address=127.0.0.1 --metrics-address=127.0.0.1 "$@"
