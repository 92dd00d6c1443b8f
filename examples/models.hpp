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

/// The ResNet example's network: three stages of one basic block each (16, 32, 64 channels at
/// 28x28, 14x14, 7x7), global average pooling and a linear classifier; about 0.08 M parameters.
/// conv3x3 - BN - ReLU - conv3x3 - BN, added to the input, then ReLU:
template <std::int64_t C>
using BasicBlock = nn::Residual<nn::Sequential<nn::Conv2d<C, C, 3, 1, 1>, nn::BatchNorm2d<C>, nn::ReLU,
                                               nn::Conv2d<C, C, 3, 1, 1>, nn::BatchNorm2d<C>>>;
/// The same with stride 2 and twice the channels; a 1x1 stride-2 projection on the shortcut.
template <std::int64_t C>
using DownBlock = nn::Residual<nn::Sequential<nn::Conv2d<C, 2 * C, 3, 2, 1>, nn::BatchNorm2d<2 * C>, nn::ReLU,
                                              nn::Conv2d<2 * C, 2 * C, 3, 1, 1>, nn::BatchNorm2d<2 * C>>,
                               nn::Sequential<nn::Conv2d<C, 2 * C, 1, 2, 0>, nn::BatchNorm2d<2 * C>>>;
using ResNet = nn::Sequential<nn::Conv2d<1, 16, 3, 1, 1>, nn::BatchNorm2d<16>, nn::ReLU,  // stem, 28x28
                              BasicBlock<16>, nn::ReLU,                                   // stage 1, 28x28
                              DownBlock<16>, nn::ReLU,                                    // stage 2, 14x14
                              DownBlock<32>, nn::ReLU,                                    // stage 3, 7x7
                              nn::GlobalAvgPool, nn::Linear<64, 10>>;
/// The ResNet example's training defaults (lr 0.05, 0.5 epochs of warmup, cosine over 10 epochs).
inline constexpr double resnet_epochs = 10;
inline constexpr float resnet_lr = 0.05f;
inline constexpr float resnet_weight_decay = 5e-5f;
inline constexpr double resnet_warmup_epochs = 0.5;

/// The CNN example's training defaults (lr 0.02, 0.5 epochs of warmup, cosine over 12 epochs).
inline constexpr double cnn_epochs = 12;
inline constexpr float cnn_lr = 0.02f;
inline constexpr float cnn_weight_decay = 5e-5f;
inline constexpr double cnn_warmup_epochs = 0.5;
}  // namespace examples
