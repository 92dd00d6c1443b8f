// fasttrain/data/loader.hpp -- deterministic shuffled minibatches, prepared ahead by a background thread.
//
//   data::Loader loader(train, {.batch_size = 128, .shuffle = true, .seed = 1, .prefetch = 2});
//   data::Batch<> batch;
//   for (std::int64_t epoch = 0; epoch < epochs; ++epoch) {
//     loader.start_epoch(epoch);
//     while (loader.next(batch)) step(batch.inputs, batch.labels);
//   }
//
// The sample order of an epoch is a pure function of (seed, epoch): the identity
// permutation shuffled by Rng::derive(seed, epoch), or the identity when shuffle is off.
// So a run can resume at any epoch and reproduce it bitwise, and prefetch = 0 (no thread)
// yields exactly the batches prefetch = 2 does.
//
// With prefetch = P > 0 a worker thread gathers the next P batches (one memcpy per sample)
// into a ring of P batch slots while the caller trains on the current one; next() swaps
// a ready slot's buffers with the caller's batch, so after warm-up no batch allocates.
// start_epoch() may be called at any point (mid-epoch too): the batches of the previous
// epoch still in flight are discarded. An exception in the worker is rethrown by next().
//
// set_batch_size(b) changes the batch size from the next start_epoch on (BatchSizeWarmup
// does, through the Trainer's DataControl); the order of the samples does not depend on it.
//
// With num_shards = W > 1 (data-parallel training, one loader per rank) every epoch's
// order -- the loader's own or one given to start_epoch -- is cut by shard_order(): rank r
// draws its part of each global batch of W * batch_size samples, and all ranks get the same
// number of samples and batches.
//
// The Loader keeps a reference to the Dataset: the dataset must outlive it and must not
// be modified while an epoch is in flight (between start_epoch() and the next() that
// returns false). The worker starts gathering only at start_epoch() (or the first next()).
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/data/dataset.hpp"

namespace fasttrain::data {

struct LoaderOptions {
  std::int64_t batch_size = 128;
  bool shuffle = true;      ///< a new permutation every epoch; false: dataset order
  std::uint64_t seed = 0;
  bool drop_last = false;   ///< drop the last, smaller batch of an epoch
  int prefetch = 2;         ///< batches prepared ahead by a background thread; 0 = no thread
  /// Data-parallel training (dist::DataParallel): this loader draws part `shard` of
  /// `num_shards` of every epoch's order, as shard_order() cuts it. 1: the whole epoch.
  int num_shards = 1;
  int shard = 0;
  /// Optional: called on every batch after it is gathered, on the prefetch thread when there
  /// is one (so it overlaps training), with an Rng that depends only on (seed, epoch, batch
  /// index): augmentation here is as deterministic as the order. It may change the inputs'
  /// values, not the batch's shape or size. Heavy work here is what makes a run data-bound
  /// (docs/profiling.md).
  std::function<void(Batch<>& batch, Rng& rng)> transform{};
};

/// Part `shard` of `num_shards` of an epoch's `order`, for ranks that each draw batches of
/// `batch` samples. Global batch k is the order's entries [k*W*b, (k+1)*W*b) (W shards, b
/// samples per rank), cut in shard order: rank r's batch k is entries [k*W*b + r*b, +b), so
/// that W ranks with batch b see, step by step, the batches one process with batch W*b would
/// see. The last, partial global batch is cut evenly too: every shard gets floor(n / W)
/// samples and the same number of batches, and the n mod W entries left over are not drawn
/// in this epoch (a different few each epoch when the order is shuffled). Throws
/// config_error when the order has fewer than W entries or the arguments are out of range.
inline std::vector<std::int64_t> shard_order(const std::vector<std::int64_t>& order, std::int64_t batch, int shard,
                                             int num_shards) {
  using fasttrain::detail::require;
  require(num_shards >= 1, "data::shard_order: num_shards must be >= 1, got ", num_shards);
  require(shard >= 0 && shard < num_shards, "data::shard_order: shard must be in [0, ", num_shards, "), got ", shard);
  require(batch >= 1, "data::shard_order: the batch size must be >= 1, got ", batch);
  const auto n = static_cast<std::int64_t>(order.size()), w = static_cast<std::int64_t>(num_shards);
  const std::int64_t per_rank = n / w;
  require(per_rank >= 1, "data::shard_order: an epoch of ", n, " samples cannot be cut into ", num_shards,
          " shards (each needs at least one sample)");
  const std::int64_t full = per_rank / batch, tail = per_rank - full * batch;
  std::vector<std::int64_t> out;
  out.reserve(static_cast<std::size_t>(per_rank));
  const auto take = [&](std::int64_t from, std::int64_t count) {
    out.insert(out.end(), order.begin() + from, order.begin() + from + count);
  };
  for (std::int64_t k = 0; k < full; ++k) take(k * w * batch + shard * batch, batch);
  if (tail > 0) take(full * w * batch + shard * tail, tail);
  return out;
}

class Loader {
 public:
  /// Keeps a reference to `ds`. Throws config_error for batch_size < 1, prefetch < 0, an
  /// empty dataset, or drop_last with batch_size > size (an epoch of zero batches);
  /// data_error when the dataset is inconsistent (Dataset::validate).
  explicit Loader(const Dataset& ds, LoaderOptions opt = {}) : ds_(ds), opt_(opt) {
    using fasttrain::detail::require;
    const std::string who = "data::Loader(" + (ds.name.empty() ? std::string("dataset") : ds.name) + ")";
    require(opt.batch_size >= 1, who, ": batch_size must be >= 1, got ", opt.batch_size);
    require(opt.prefetch >= 0, who, ": prefetch must be >= 0 (0 = no background thread), got ", opt.prefetch);
    require(ds.size() > 0, who, ": the dataset is empty");
    require(opt.num_shards >= 1, who, ": num_shards must be >= 1, got ", opt.num_shards);
    require(opt.shard >= 0 && opt.shard < opt.num_shards, who, ": shard must be in [0, num_shards = ", opt.num_shards,
            "), got ", opt.shard);
    require(ds.size() >= opt.num_shards, who, ": ", ds.size(), " samples cannot be cut into ", opt.num_shards,
            " shards");
    require(!opt.drop_last || opt.batch_size <= ds.size() / opt.num_shards, who, ": drop_last with batch_size ",
            opt.batch_size, " larger than the ", opt.num_shards > 1 ? "shard" : "dataset", " (",
            ds.size() / opt.num_shards, " samples) leaves no batch in an epoch");
    ds.validate();
    n_ = ds.size();
    shard_n_ = n_ / opt.num_shards;
    sample_size_ = static_cast<std::int64_t>(ds.features.rows());
    nb_ = opt.drop_last ? shard_n_ / opt.batch_size : (shard_n_ + opt.batch_size - 1) / opt.batch_size;
    next_bs_ = opt.batch_size;
    if (opt.prefetch > 0) {
      slots_.resize(static_cast<std::size_t>(std::min<std::int64_t>(opt.prefetch, nb_)));
      worker_ = std::thread([this] { produce(); });
    }
  }

  /// A Loader keeps a reference to its dataset, so a temporary one would dangle.
  Loader(Dataset&&, LoaderOptions = {}) = delete;
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /// Stops and joins the worker; safe at any point, mid-epoch included.
  ~Loader() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    producer_cv_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

  /// Batches per epoch: ceil(size / batch_size), or floor with drop_last (size: of this
  /// loader's shard, floor(dataset size / num_shards), when num_shards > 1).
  std::int64_t batches_per_epoch() const { return nb_; }
  /// Samples per epoch: size, or batches_per_epoch * batch_size with drop_last.
  std::int64_t samples_per_epoch() const { return opt_.drop_last ? nb_ * opt_.batch_size : shard_n_; }
  const Dataset& dataset() const { return ds_; }
  const LoaderOptions& options() const { return opt_; }

  /// Batches of `b` samples from the next start_epoch() on (0: options().batch_size again).
  /// batches_per_epoch() and samples_per_epoch() keep describing options().batch_size;
  /// batches_in_epoch(), samples_in_epoch() and batch_size() describe the epoch started.
  void set_batch_size(std::int64_t b) {
    using fasttrain::detail::require;
    require(b >= 0, "data::Loader::set_batch_size: the batch size must be >= 1 (or 0 for the options' ",
            opt_.batch_size, "), got ", b);
    require(!opt_.drop_last || b <= shard_n_, "data::Loader::set_batch_size: drop_last with batch size ", b,
            " larger than the ", opt_.num_shards > 1 ? "shard" : "dataset", " (", shard_n_,
            " samples) leaves no batch in an epoch");
    next_bs_ = b ? b : opt_.batch_size;
  }
  /// Samples per batch of the epoch started (of the next one before any start_epoch).
  std::int64_t batch_size() const { return started_ ? bs_ : next_bs_; }

  /// Begins epoch `epoch` (>= 0): its order is Rng::derive(seed, epoch).shuffle of 0..N-1
  /// (identity when shuffle is off). Cancels whatever is left of the previous epoch.
  /// `first_batch` > 0 starts at that batch of the epoch (a resumed run), without gathering
  /// the ones before it; first_batch == batches_per_epoch() gives an exhausted epoch.
  void start_epoch(std::int64_t epoch, std::int64_t first_batch = 0) {
    fasttrain::detail::require(epoch >= 0, "data::Loader::start_epoch: epoch must be >= 0, got ", epoch);
    make_order(epoch, order_);
    epoch_ = epoch;
    begin(first_batch);
  }

  /// Begins an epoch that draws exactly `order` (dataset indices, repeats allowed), batched
  /// by batch_size (the last batch smaller unless drop_last): how methods such as
  /// DataPruning and Curriculum choose the samples. The epoch has batches_in_epoch() batches.
  void start_epoch(std::int64_t epoch, std::int64_t first_batch, std::vector<std::int64_t> order) {
    fasttrain::detail::require(epoch >= 0, "data::Loader::start_epoch: epoch must be >= 0, got ", epoch);
    fasttrain::detail::require(!order.empty(), "data::Loader::start_epoch: the given order is empty");
    for (std::size_t k = 0; k < order.size(); ++k)
      fasttrain::detail::require(order[k] >= 0 && order[k] < n_, "data::Loader::start_epoch: entry ", k,
                                 " of the given order is ", order[k], ", not a sample index in [0, ", n_, ")");
    const auto shard_size = static_cast<std::int64_t>(order.size()) / opt_.num_shards;
    fasttrain::detail::require(shard_size >= 1, "data::Loader::start_epoch: an order of ", order.size(),
                               " samples cannot be cut into ", opt_.num_shards, " shards");
    fasttrain::detail::require(!opt_.drop_last || shard_size >= next_bs_, "data::Loader::start_epoch: drop_last with ",
                               opt_.num_shards > 1 ? "a shard" : "an order", " of ", shard_size,
                               " samples, fewer than a batch, leaves no batch");
    order_ = std::move(order);
    epoch_ = epoch;
    begin(first_batch);
  }

  /// Batches in the current epoch: batches_per_epoch(), or the given order's count.
  std::int64_t batches_in_epoch() const { return epoch_nb_; }
  /// Samples in the current epoch.
  std::int64_t samples_in_epoch() const {
    const auto n = static_cast<std::int64_t>(order_size_);
    return opt_.drop_last ? epoch_nb_ * bs_ : n;
  }

  /// Hands out the next batch of the epoch in `out` (its previous buffers are recycled);
  /// returns false once the epoch is exhausted (until the next start_epoch). Calling next()
  /// before any start_epoch starts epoch 0. Rethrows an exception raised while preparing
  /// the batch.
  bool next(Batch<>& out) {
    if (!started_) start_epoch(0);
    if (consumed_ >= epoch_nb_) return false;
    if (!worker_.joinable()) {
      gather(order_, epoch_, consumed_, bs_, out);
      ++consumed_;
      return true;
    }
    std::unique_lock<std::mutex> lk(mu_);
    Slot& s = slots_[static_cast<std::size_t>(consumed_ % static_cast<std::int64_t>(slots_.size()))];
    consumer_cv_.wait(lk, [&] { return s.state == Slot::ready || error_ != nullptr; });
    if (s.state != Slot::ready) std::rethrow_exception(error_);
    swap_batches(out, s.batch);
    s.state = Slot::empty;
    ++consumed_;
    lk.unlock();
    producer_cv_.notify_one();
    return true;
  }

 private:
  struct Slot {
    enum State { empty, filling, ready };
    Batch<> batch;
    State state = empty;
  };

  // Starts the epoch whose order is in order_ (the whole epoch's: it is cut to this loader's
  // shard here), at batch `first_batch`.
  void begin(std::int64_t first_batch) {
    bs_ = next_bs_;
    if (opt_.num_shards > 1) order_ = shard_order(order_, bs_, opt_.shard, opt_.num_shards);
    order_size_ = order_.size();
    const auto n = static_cast<std::int64_t>(order_size_);
    epoch_nb_ = opt_.drop_last ? n / bs_ : (n + bs_ - 1) / bs_;
    fasttrain::detail::require(first_batch >= 0 && first_batch <= epoch_nb_,
                               "data::Loader::start_epoch: first_batch must be in [0, ", epoch_nb_, "], got ",
                               first_batch);
    if (worker_.joinable()) {
      {
        std::lock_guard<std::mutex> lk(mu_);
        ++generation_;
        pending_order_.swap(order_);  // the worker takes it; order_ becomes scratch
        pending_first_ = first_batch;
        pending_nb_ = epoch_nb_;
        pending_bs_ = bs_;
        pending_epoch_ = epoch_;
        for (auto& s : slots_)
          if (s.state == Slot::ready) s.state = Slot::empty;
        error_ = nullptr;
      }
      producer_cv_.notify_one();
    }
    started_ = true;
    consumed_ = first_batch;
  }

  static void swap_batches(Batch<>& a, Batch<>& b) {
    a.inputs.data.swap(b.inputs.data);
    std::swap(a.inputs.shape, b.inputs.shape);
    a.labels.swap(b.labels);
    a.indices.swap(b.indices);
  }

  void make_order(std::int64_t epoch, std::vector<std::int64_t>& order) const {
    order.resize(static_cast<std::size_t>(n_));
    std::iota(order.begin(), order.end(), std::int64_t{0});
    if (opt_.shuffle) Rng::derive(opt_.seed, static_cast<std::uint64_t>(epoch)).shuffle(order.begin(), order.end());
  }

  // Fills `b` with batch `k` (of `bs` samples) of the epoch whose order is `order`. Reads only
  // the dataset and `order`; called by the worker (prefetch > 0) or by next() (prefetch = 0).
  void gather(const std::vector<std::int64_t>& order, std::int64_t epoch, std::int64_t k, std::int64_t bs,
              Batch<>& b) const {
    if (ds_.size() != n_ || static_cast<std::int64_t>(ds_.labels.size()) != n_ ||
        static_cast<std::int64_t>(ds_.features.rows()) != sample_size_)
      throw data_error(ds_.name.empty() ? std::string("<unnamed dataset>") : ds_.name,
                       fasttrain::detail::cat("changed size while a Loader was using it (was ", n_, " samples of ",
                                              sample_size_, ", now ", ds_.size(), " samples of ",
                                              static_cast<std::int64_t>(ds_.features.rows()), ")"));
    const std::int64_t first = k * bs;
    const std::int64_t count = std::min(bs, static_cast<std::int64_t>(order.size()) - first);
    b.inputs.resize(ds_.sample_shape, static_cast<Eigen::Index>(count));
    b.labels.resize(static_cast<std::size_t>(count));
    b.indices.resize(static_cast<std::size_t>(count));
    const float* src = ds_.features.data();
    float* dst = b.inputs.data.data();
    const auto bytes = static_cast<std::size_t>(sample_size_) * sizeof(float);
    for (std::int64_t j = 0; j < count; ++j) {
      const std::int64_t i = order[static_cast<std::size_t>(first + j)];
      std::memcpy(dst + j * sample_size_, src + i * sample_size_, bytes);
      b.labels[static_cast<std::size_t>(j)] = ds_.labels[static_cast<std::size_t>(i)];
      b.indices[static_cast<std::size_t>(j)] = i;
    }
    if (opt_.transform) {
      Rng rng = Rng::derive(opt_.seed ^ 0x7472616e73666f72ULL,  // "transfor": apart from the order's stream
                            (static_cast<std::uint64_t>(epoch) << 32) ^ static_cast<std::uint64_t>(k));
      const Shape shape = b.inputs.shape;
      opt_.transform(b, rng);
      if (!(b.inputs.shape == shape) || b.inputs.batch() != count)
        throw config_error(fasttrain::detail::cat("data::Loader: the transform changed the batch from ", count,
                                                  " samples of ", shape.str(), " to ", b.inputs.batch(),
                                                  " samples of ", b.inputs.shape.str(),
                                                  "; it may change values only"));
    }
  }

  // The worker: fills slot k % P with batch k of the newest epoch, in order, as slots free up.
  void produce() {
    std::vector<std::int64_t> order;
    std::uint64_t gen = 0;  // 0: no epoch yet
    std::int64_t k = 0, nb = 0, bs = 1, ep = 0;
    bool failed = false;
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      producer_cv_.wait(lk, [&] {
        return stop_ || generation_ != gen ||
               (gen != 0 && !failed && k < nb && slots_[static_cast<std::size_t>(k % static_cast<std::int64_t>(slots_.size()))].state == Slot::empty);
      });
      if (stop_) return;
      if (generation_ != gen) {  // a new epoch: take its order, start at batch 0
        gen = generation_;
        order.swap(pending_order_);
        k = pending_first_;
        nb = pending_nb_;
        bs = pending_bs_;
        ep = pending_epoch_;
        failed = false;
        continue;
      }
      Slot& s = slots_[static_cast<std::size_t>(k % static_cast<std::int64_t>(slots_.size()))];
      s.state = Slot::filling;
      const std::int64_t batch = k++;
      lk.unlock();
      std::exception_ptr err;
      try {
        gather(order, ep, batch, bs, s.batch);
      } catch (...) {
        err = std::current_exception();
      }
      lk.lock();
      if (generation_ != gen) {  // the epoch was cancelled while we filled: discard
        s.state = Slot::empty;
        continue;
      }
      if (err) {
        s.state = Slot::empty;
        error_ = err;
        failed = true;
      } else {
        s.state = Slot::ready;
      }
      consumer_cv_.notify_one();
    }
  }

  const Dataset& ds_;
  LoaderOptions opt_;
  std::int64_t n_ = 0, shard_n_ = 0, nb_ = 0, sample_size_ = 0;  // shard_n_: samples per epoch of the shard

  // Owned by the calling thread.
  bool started_ = false;
  std::int64_t consumed_ = 0;         // batches handed out this epoch
  std::int64_t epoch_nb_ = 0;         // batches in this epoch
  std::int64_t bs_ = 1;               // samples per batch in this epoch
  std::int64_t epoch_ = 0;            // the epoch started
  std::int64_t next_bs_ = 0;          // batch size of the next epoch (set_batch_size, else the options')
  std::size_t order_size_ = 0;        // samples in this epoch's order
  std::vector<std::int64_t> order_;   // the epoch's order (prefetch = 0) or scratch

  // Shared with the worker, guarded by mu_ (a slot's batch belongs to the worker while
  // `filling`, to whoever holds mu_ otherwise).
  std::mutex mu_;
  std::condition_variable producer_cv_, consumer_cv_;
  std::vector<Slot> slots_;
  std::vector<std::int64_t> pending_order_;
  std::int64_t pending_first_ = 0, pending_nb_ = 0, pending_bs_ = 1, pending_epoch_ = 0;
  std::uint64_t generation_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread worker_;  // last: started after everything above is constructed
};

}  // namespace fasttrain::data
