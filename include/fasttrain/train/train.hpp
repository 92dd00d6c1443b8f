// fasttrain/train/train.hpp -- the training loop.
#pragma once
#include "fasttrain/train/compose.hpp"
#include "fasttrain/train/context.hpp"
#include "fasttrain/train/evaluate.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/method.hpp"
#include "fasttrain/train/progress.hpp"
#include "fasttrain/train/result.hpp"
#include "fasttrain/train/trainer.hpp"
