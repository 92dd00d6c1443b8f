// fasttrain/data/data.hpp -- the whole data layer: datasets, readers, normalisation, loaders.
//
//   #include <fasttrain/data/data.hpp>
//   auto [train, test] = fasttrain::data::fashion_mnist();
//   const auto norm = fasttrain::data::Normalizer::fit(train);
//   norm.apply(train); norm.apply(test);
//   fasttrain::data::Loader loader(train, {.batch_size = 128, .seed = 1});
//
// Needs zlib (link with -lz) and threads (-pthread).
#pragma once

#include "fasttrain/data/dataset.hpp"
#include "fasttrain/data/idx.hpp"
#include "fasttrain/data/csv.hpp"
#include "fasttrain/data/normalize.hpp"
#include "fasttrain/data/loader.hpp"
#include "fasttrain/data/fashion_mnist.hpp"
