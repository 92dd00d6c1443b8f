// fasttrain/nn/nn.hpp -- all layers and losses.
#pragma once
#include "fasttrain/nn/activation.hpp"
#include "fasttrain/nn/batchnorm.hpp"
#include "fasttrain/nn/conv.hpp"
#include "fasttrain/nn/dropout.hpp"
#include "fasttrain/nn/init.hpp"
#include "fasttrain/nn/layer.hpp"
#include "fasttrain/nn/linear.hpp"
#include "fasttrain/nn/loss.hpp"
#include "fasttrain/nn/residual.hpp"
#include "fasttrain/nn/sequential.hpp"
