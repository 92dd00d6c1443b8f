// fasttrain/data/dataset.hpp -- a labelled classification dataset held in memory, and a batch of it.
//
//   data::Dataset ds = data::load_idx(images, labels, 10, "fashion-mnist/train");
//   ds.validate();                               // throws data_error naming ds.name on inconsistency
//   data::Dataset first100 = data::subset(ds, 0, 100);
//
// `features` has one column per sample (the backend's batch layout), so a sample is a
// contiguous run of `sample_shape.size()` floats and a loader gathers a batch with one
// memcpy per sample. `Batch` is what a Loader hands to the training loop.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/tensor/eigen.hpp"
#include "fasttrain/tensor/shape.hpp"

namespace fasttrain::data {

/// Samples (columns of `features`) with integer class labels in [0, num_classes).
struct Dataset {
  cpu::eigen::matrix features;        ///< (sample size) x N, one column per sample
  std::vector<std::int32_t> labels;   ///< N labels, one per column of `features`
  Shape sample_shape;                 ///< layout of one column, e.g. {1, 28, 28}
  int num_classes = 0;                ///< labels lie in [0, num_classes)
  std::string name;                   ///< used in error messages ("fashion-mnist/train")

  /// Number of samples.
  std::int64_t size() const { return static_cast<std::int64_t>(features.cols()); }

  /// Checks that features, labels, sample_shape and num_classes agree; throws
  /// data_error(name, problem) naming the first inconsistency found.
  void validate() const {
    const std::string who = name.empty() ? std::string("<unnamed dataset>") : name;
    if (static_cast<std::size_t>(features.cols()) != labels.size())
      throw data_error(who, fasttrain::detail::cat("has ", static_cast<std::int64_t>(features.cols()),
                                        " samples (feature columns) but ", labels.size(), " labels"));
    if (static_cast<std::int64_t>(features.rows()) != sample_shape.size())
      throw data_error(who, fasttrain::detail::cat("features have ", static_cast<std::int64_t>(features.rows()),
                                        " rows per sample but sample_shape ", sample_shape.str(), " has ",
                                        sample_shape.size(), " elements"));
    if (num_classes < 1 && !labels.empty())
      throw data_error(who, fasttrain::detail::cat("num_classes is ", num_classes,
                                        "; set it to the number of classes (labels lie in [0, num_classes))"));
    for (std::size_t i = 0; i < labels.size(); ++i) {
      const std::int32_t y = labels[i];
      if (y < 0 || y >= num_classes)
        throw data_error(who, fasttrain::detail::cat("label ", y, " at index ", i, " is out of range [0, ", num_classes,
                                          ")"));
    }
  }
};

/// A minibatch: `inputs.data` is (sample size) x (batch), `labels[j]` the class of column j,
/// `indices[j]` the dataset index the column was taken from.
template <class B = cpu::eigen>
struct Batch {
  typename B::tensor inputs;
  typename B::labels labels;
  std::vector<std::int64_t> indices;  ///< dataset indices of the samples, in batch order

  /// Number of samples in the batch (columns of inputs).
  std::int64_t size() const { return static_cast<std::int64_t>(inputs.batch()); }
};

/// Copies a host batch (what data::Loader produces) to backend B: the inputs through
/// B::from_host, the labels and indices as they are (labels stay on the host everywhere).
template <class B>
void upload(const Batch<cpu::eigen>& host, Batch<B>& out) {
  B::from_host(host.inputs.data.data(), host.inputs.data.rows(), host.inputs.data.cols(), out.inputs.data);
  out.inputs.shape = host.inputs.shape;
  out.labels = host.labels;
  out.indices = host.indices;
}

/// The `count` samples starting at `first`, as a new (validated) dataset named
/// "<name>[first:first+count]". Throws config_error when the range is not inside `ds`,
/// data_error when `ds` itself is inconsistent.
inline Dataset subset(const Dataset& ds, std::int64_t first, std::int64_t count) {
  ds.validate();
  fasttrain::detail::require(first >= 0 && count >= 0 && first <= ds.size() && count <= ds.size() - first,
                  "data::subset: range [", first, ", ", first + count, ") is not inside ",
                  ds.name.empty() ? std::string("the dataset") : ds.name, " of ", ds.size(), " samples");
  Dataset out;
  out.features = ds.features.middleCols(static_cast<Eigen::Index>(first), static_cast<Eigen::Index>(count));
  out.labels.assign(ds.labels.begin() + first, ds.labels.begin() + first + count);
  out.sample_shape = ds.sample_shape;
  out.num_classes = ds.num_classes;
  out.name = fasttrain::detail::cat(ds.name, "[", first, ":", first + count, "]");
  out.validate();
  return out;
}

}  // namespace fasttrain::data
