// fasttrain/methods/methods.hpp -- every speedup method.
#pragma once
#include "fasttrain/methods/checkpoint.hpp"
#include "fasttrain/methods/data/cutmix.hpp"
#include "fasttrain/methods/data/cutout.hpp"
#include "fasttrain/methods/data/mixup.hpp"
#include "fasttrain/methods/optim/gradient_clipping.hpp"
#include "fasttrain/methods/optim/label_smoothing.hpp"
