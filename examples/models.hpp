// examples/models.hpp -- the networks of the Fashion-MNIST examples, shared with the
// benchmarks that measure methods on them.
#pragma once

#include <fasttrain/fasttrain.hpp>

namespace examples {
using namespace fasttrain;

/// conv5x5(32)-pool-conv5x5(64)-pool-fc1024-fc10: the dataset's published reference CNN.
/// AdaptiveAvgPool2d<7, 7> is a copy at 28x28 and lets the network take smaller images
/// (ProgressiveResizing): their 7x7 grid of means feeds the same fc layer.
using CNN = nn::Sequential<nn::Conv2d<1, 32, 5, 1, 2>, nn::ReLU, nn::MaxPool2d<2>,   // 28x28x1 -> 14x14x32
                           nn::Conv2d<32, 64, 5, 1, 2>, nn::ReLU, nn::MaxPool2d<2>,  // -> 7x7x64
                           nn::AdaptiveAvgPool2d<7, 7>,                              // -> 7x7x64 at any size
                           nn::Linear<64 * 7 * 7, 1024>, nn::ReLU,                   // a 7x7x64 sample is 3136 features
                           nn::Linear<1024, 10>>;

/// The CNN example's training defaults (lr 0.02, 0.5 epochs of warmup, cosine over 12 epochs).
inline constexpr double cnn_epochs = 12;
inline constexpr float cnn_lr = 0.02f;
inline constexpr float cnn_weight_decay = 5e-5f;
inline constexpr double cnn_warmup_epochs = 0.5;
}  // namespace examples
