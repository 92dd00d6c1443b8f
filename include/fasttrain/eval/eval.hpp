// fasttrain/eval/eval.hpp -- honest evaluation: FLOPs per layer, multi-seed studies over
// budgets, time to a target with intervals, Pareto frontiers, speedups; CSV, JSON,
// Markdown and SVG reports. See docs/evaluation.md.
#pragma once

#include "fasttrain/eval/flops.hpp"
#include "fasttrain/eval/stats.hpp"
#include "fasttrain/eval/study.hpp"
#include "fasttrain/eval/svg.hpp"
