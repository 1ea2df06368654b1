#!/usr/bin/env bash
# The one install command (README): the default environment, the two training-engine environments and the
# PyTorch environment.
#   .venv                 layout, merge, eval, inspect, the tests (paddleformers 0.3.1 for the LoRA format)
#   .venv-erniekit        the user's erniekit fork (engine=erniekit): its imports and pins (docs/train.md)
#   .venv-paddleformers   PaddleFormers 1.x (engine=paddleformers, docs/train_paddleformers.md)
#   .venv-torch           the transformers engines (layout detection, eval), torch + transformers from PyPI, no Paddle
# Engines that cannot share one environment get their own; `./install.sh default` builds only .venv.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
envs=${*:-default erniekit paddleformers torch}
for env in $envs; do
  case $env in
    default)
      $PY -m venv .venv && .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e ".[dev]" ;;
    erniekit)   # imgaug requires opencv-python (a second OpenCV beside paddlex's): installed without deps
      $PY -m venv .venv-erniekit && .venv-erniekit/bin/pip install -q --upgrade pip \
        && .venv-erniekit/bin/pip install -q -e ".[dev,erniekit]" \
        && .venv-erniekit/bin/pip install -q --no-deps imgaug==0.4.0 ;;
    paddleformers)
      $PY -m venv .venv-paddleformers && .venv-paddleformers/bin/pip install -q --upgrade pip \
        && .venv-paddleformers/bin/pip install -q -e ".[paddleformers]" ;;
    torch)   # the `torch` extra alone, project installed --no-deps: no Paddle (pyproject explains why)
      $PY -m venv .venv-torch && .venv-torch/bin/pip install -q --upgrade pip \
        && .venv-torch/bin/pip install -q --no-deps -e . \
        && .venv-torch/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["torch"]))' >.venv-torch/requirements.txt \
        && .venv-torch/bin/pip install -q -r .venv-torch/requirements.txt ;;
    *) echo "install.sh: unknown environment $env (default, erniekit, paddleformers, torch)" >&2; exit 2 ;;
  esac
  echo "install.sh: $env ready"
done
