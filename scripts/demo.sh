#!/usr/bin/env bash
# scripts/demo.sh -- build and run the Fashion-MNIST MLP example (release preset).
# Arguments go to the example, e.g. `scripts/demo.sh --epochs 3 --seed 1 --threads 2`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
cmake --preset release
cmake --build --preset release -j 2 --target fashion_mnist_mlp
exec build/release/examples/fashion_mnist_mlp "$@"
