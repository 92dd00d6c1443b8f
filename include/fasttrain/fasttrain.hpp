// fasttrain/fasttrain.hpp -- everything that needs no optional dependency.
//
//   #include <fasttrain/fasttrain.hpp>
//   using namespace fasttrain::literals;
//
// Layers, in dependency order: core (errors, RNG, Time) -> tensor (backends) -> nn
// (layers, losses) -> optim (optimizers, schedules) -> data (readers, loader) -> train
// (the Trainer) -> methods (speedup policies).
#pragma once
#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/core/time.hpp"
#include "fasttrain/tensor/eigen.hpp"
#include "fasttrain/tensor/shape.hpp"
#include "fasttrain/nn/nn.hpp"
#include "fasttrain/optim/optim.hpp"
#include "fasttrain/data/data.hpp"
#include "fasttrain/train/train.hpp"
#include "fasttrain/io/io.hpp"
#include "fasttrain/methods/methods.hpp"
#include "fasttrain/recipes/recipes.hpp"
#include "fasttrain/eval/eval.hpp"
#include "fasttrain/profile/profile.hpp"
