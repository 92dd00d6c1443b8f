// fasttrain/data/device_loader.hpp -- a training set kept in the backend's memory, batches
// gathered there.
//
//   data::DeviceLoader<gpu::thrust> loader(ds.train, {.batch_size = 128, .seed = 1});
//   trainer.fit(loader, &ds.test, options);
//
// data::Loader gathers each batch on the host and the Trainer uploads it: on a GPU that is a
// host copy and a transfer per step. DeviceLoader uploads the features once, in its
// constructor, and gathers each batch with one kernel from the device copy. It draws the
// same batches as a Loader with the same options (order, shards, batch sizes set by
// methods, resume in mid-epoch): inside it a Loader runs over the sample indices alone, and
// only those (4 bytes a sample) cross to the device each step.
//
// A training set that does not fit in the device's free memory (or in the budget given) is
// refused before training, with both sizes named; use data::Loader for it. A transform
// (LoaderOptions::transform) edits host batches and is refused here too.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

#include "fasttrain/core/error.hpp"
#include "fasttrain/data/dataset.hpp"
#include "fasttrain/data/loader.hpp"
#include "fasttrain/tensor/kernels.hpp"  // FASTTRAIN_HD

namespace fasttrain::data {

template <class B>
class DeviceLoader {
 public:
  using backend = B;
  using index = std::int64_t;

  /// Uploads ds's features to B. `memory_budget_bytes` caps what the features may take;
  /// 0 means the device's free memory where the backend reports it (B::free_memory_bytes).
  explicit DeviceLoader(const Dataset& ds, LoaderOptions opt = {}, std::int64_t memory_budget_bytes = 0)
      : ds_(ds), opt_(opt), indices_(index_set(ds, opt, memory_budget_bytes)), loader_(indices_, index_options(opt)) {
    B::from_host(ds.features.data(), ds.features.rows(), ds.features.cols(), features_);
  }
  DeviceLoader(Dataset&&, LoaderOptions = {}, std::int64_t = 0) = delete;
  DeviceLoader(const DeviceLoader&) = delete;
  DeviceLoader& operator=(const DeviceLoader&) = delete;

  // The data::Loader interface the Trainer uses (see loader.hpp for each).
  std::int64_t batches_per_epoch() const { return loader_.batches_per_epoch(); }
  std::int64_t samples_per_epoch() const { return loader_.samples_per_epoch(); }
  const Dataset& dataset() const { return ds_; }
  const LoaderOptions& options() const { return opt_; }
  void set_batch_size(std::int64_t b) { loader_.set_batch_size(b); }
  std::int64_t batch_size() const { return loader_.batch_size(); }
  void start_epoch(std::int64_t epoch, std::int64_t first_batch = 0) { loader_.start_epoch(epoch, first_batch); }
  void start_epoch(std::int64_t epoch, std::int64_t first_batch, std::vector<std::int64_t> order) {
    loader_.start_epoch(epoch, first_batch, std::move(order));
  }
  std::int64_t batches_in_epoch() const { return loader_.batches_in_epoch(); }
  std::int64_t samples_in_epoch() const { return loader_.samples_in_epoch(); }
  /// Bytes the features take on the device.
  std::int64_t device_bytes() const { return features_.size() * static_cast<std::int64_t>(sizeof(float)); }

  /// The next batch, gathered on the device; false at the end of the epoch.
  bool next(Batch<B>& out) {
    if (!loader_.next(host_)) return false;
    const index count = host_.size(), s = ds_.features.rows();
    B::from_host(host_.inputs.data.data(), 1, count, index_column_);  // the sample indices, as floats
    out.inputs.resize(ds_.sample_shape, count);
    const float* src = features_.data();
    const float* ix = index_column_.data();
    float* dst = out.inputs.data.data();
    B::for_index(s * count, [=] FASTTRAIN_HD(index k) {
      dst[k] = src[static_cast<index>(ix[k / s]) * s + k % s];
    });
    out.labels = host_.labels;
    out.indices = host_.indices;
    return true;
  }

 private:
  /// Indices as floats are exact below 2^24.
  static constexpr std::int64_t max_samples = std::int64_t{1} << 24;

  // A dataset of the sample indices alone (one float each) with the real labels: the inner
  // Loader draws its batches in the order a Loader over ds would.
  static Dataset index_set(const Dataset& ds, const LoaderOptions& opt, std::int64_t budget) {
    const std::string who = "data::DeviceLoader(" + (ds.name.empty() ? std::string("dataset") : ds.name) + ")";
    ds.validate();
    fasttrain::detail::require(!opt.transform, who,
                    ": LoaderOptions::transform edits host batches; use data::Loader for a transform, or a "
                    "method that edits batches on the device");
    fasttrain::detail::require(ds.size() <= max_samples, who, ": ", ds.size(), " samples; at most ", max_samples,
                    " are supported");
    fasttrain::detail::require(budget >= 0, who, ": the memory budget must be >= 0 bytes (0: the device's free memory), got ",
                    budget);
    const std::int64_t need = ds.features.size() * static_cast<std::int64_t>(sizeof(float));
    std::int64_t have = budget;
    if constexpr (requires { B::free_memory_bytes(); })
      if (have == 0) have = B::free_memory_bytes();
    if (have > 0 && need > have)
      throw config_error(fasttrain::detail::cat(who, ": the training set needs ", mib(need), " on ", B::name, " (",
                                     ds.size(), " samples of ", ds.features.rows(), " floats), but ",
                                     budget > 0 ? "the budget given is " : "the device has ", mib(have),
                                     budget > 0 ? "" : " free", "; use data::Loader, which uploads one batch at a time"));
    Dataset out;
    out.features.resize(1, ds.size());
    for (std::int64_t i = 0; i < ds.size(); ++i) out.features(0, i) = static_cast<float>(i);
    out.labels = ds.labels;
    out.sample_shape = Shape(1);
    out.num_classes = ds.num_classes;
    out.name = ds.name;
    return out;
  }
  static LoaderOptions index_options(LoaderOptions opt) {
    opt.prefetch = 0;  // gathering indices costs nothing: no thread
    return opt;
  }
  static std::string mib(std::int64_t bytes) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%lld bytes (%.1f MiB)", static_cast<long long>(bytes),
                  static_cast<double>(bytes) / (1024.0 * 1024.0));
    return buf;
  }

  const Dataset& ds_;
  LoaderOptions opt_;
  Dataset indices_;
  Loader loader_;
  typename B::matrix features_, index_column_;
  Batch<> host_;
};

}  // namespace fasttrain::data
