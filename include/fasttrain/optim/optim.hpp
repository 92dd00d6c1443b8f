// fasttrain/optim/optim.hpp -- optimizers and schedules.
#pragma once
#include "fasttrain/optim/adamw.hpp"
#include "fasttrain/optim/schedule.hpp"
#include "fasttrain/optim/sgd.hpp"
