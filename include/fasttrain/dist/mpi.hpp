// fasttrain/dist/mpi.hpp -- the little of MPI that data-parallel training needs.
//
//   int main(int argc, char** argv) {
//     return fasttrain::dist::run(argc, argv, [&](fasttrain::dist::Communicator& comm) {
//       ... build the model and a data::Loader with .num_shards = comm.size(), .shard = comm.rank()
//       Trainer t{model, opt, loss, fasttrain::dist::DataParallel{comm}};
//       t.fit(loader, test, {...});
//     });
//   }
//
// Optional: this header and dist/data_parallel.hpp need an MPI library (the CMake target
// fasttrain::dist links MPI::MPI_CXX); nothing else in fasttrain includes them.
//
// Failure: a collective that one rank never enters leaves the others waiting forever. So
// run() ends the whole job (MPI_Abort) when an exception escapes any rank, after printing
// which rank failed and why, and the communicators here return MPI's errors as exceptions
// (MPI_ERRORS_RETURN) so that they reach run() too. A rank that dies outright (a signal) is
// the launcher's to handle: mpirun and srun end the job when a process exits abnormally.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "fasttrain/core/error.hpp"

namespace fasttrain::dist {

/// An MPI call failed; what() names the call and MPI's message.
class mpi_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  throw mpi_error(fasttrain::detail::cat("fasttrain::dist: ", call, " failed: ", std::string(msg, static_cast<std::size_t>(len))));
}
}  // namespace detail

/// MPI for the lifetime of the object: MPI_Init_thread with MPI_THREAD_FUNNELED (only the
/// thread that made the Environment calls MPI; data::Loader's worker never does), and
/// MPI_Finalize at the end. When MPI is already initialised it neither initialises nor
/// finalises it.
class Environment {
 public:
  Environment(int& argc, char**& argv) {
    int initialised = 0;
    detail::check(MPI_Initialized(&initialised), "MPI_Initialized");
    if (initialised) return;
    int provided = 0;
    detail::check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owner_ = true;
    if (provided < MPI_THREAD_FUNNELED) {
      MPI_Finalize();
      owner_ = false;
      throw mpi_error("fasttrain::dist: the MPI library does not provide MPI_THREAD_FUNNELED");
    }
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  ~Environment() {
    if (!owner_) return;
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (!finalised) MPI_Finalize();
  }

 private:
  bool owner_ = false;
};

/// A view of an MPI communicator (not owned; MPI_COMM_WORLD by default) with the
/// collectives DataParallel uses. Sets MPI_ERRORS_RETURN on it, so that a failed call
/// throws mpi_error instead of aborting without a word.
class Communicator {
 public:
  explicit Communicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    detail::check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    detail::check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    detail::check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm get() const { return comm_; }

  /// In place: data[i] <- the sum of data[i] over the ranks.
  void allreduce_sum(float* data, std::size_t n) const {
    for (std::size_t done = 0; done < n;) {
      const int count = chunk(n - done);
      detail::check(MPI_Allreduce(MPI_IN_PLACE, data + done, count, MPI_FLOAT, MPI_SUM, comm_), "MPI_Allreduce");
      done += static_cast<std::size_t>(count);
    }
  }
  /// Starts the sum of data[0..n) over the ranks, in place; n must fit an int. Complete it
  /// with wait().
  MPI_Request start_allreduce_sum(float* data, std::size_t n) const {
    MPI_Request req = MPI_REQUEST_NULL;
    detail::check(MPI_Iallreduce(MPI_IN_PLACE, data, chunk(n), MPI_FLOAT, MPI_SUM, comm_, &req), "MPI_Iallreduce");
    return req;
  }
  static void wait(MPI_Request& req) { detail::check(MPI_Wait(&req, MPI_STATUS_IGNORE), "MPI_Wait"); }

  std::int64_t min(std::int64_t v) const { return reduce_one(v, MPI_MIN); }
  std::int64_t max(std::int64_t v) const { return reduce_one(v, MPI_MAX); }
  std::int64_t sum(std::int64_t v) const { return reduce_one(v, MPI_SUM); }

  /// data[0..n) <- root's.
  void broadcast(float* data, std::size_t n, int root = 0) const {
    for (std::size_t done = 0; done < n;) {
      const int count = chunk(n - done);
      detail::check(MPI_Bcast(data + done, count, MPI_FLOAT, root, comm_), "MPI_Bcast");
      done += static_cast<std::size_t>(count);
    }
  }
  double broadcast(double v, int root = 0) const {
    detail::check(MPI_Bcast(&v, 1, MPI_DOUBLE, root, comm_), "MPI_Bcast");
    return v;
  }
  void barrier() const { detail::check(MPI_Barrier(comm_), "MPI_Barrier"); }

  /// Ends every process of the job with `code` (MPI_Abort on MPI_COMM_WORLD).
  [[noreturn]] static void abort(int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; should it, do not run on
  }

 private:
  static int chunk(std::size_t n) {
    constexpr std::size_t most = static_cast<std::size_t>(1) << 30;  // within int, with room
    return static_cast<int>(n < most ? n : most);
  }
  std::int64_t reduce_one(std::int64_t v, MPI_Op op) const {
    long long x = v, r = 0;
    detail::check(MPI_Allreduce(&x, &r, 1, MPI_LONG_LONG, op, comm_), "MPI_Allreduce");
    return r;
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

/// Initialises MPI, calls f(comm) with MPI_COMM_WORLD, finalises MPI and returns f's result
/// (0 when f returns void). When an exception escapes f on any rank, prints
/// "fasttrain::dist: rank R of W failed: <what>" to stderr and ends the whole job with exit
/// code 1 (MPI_Abort): the other ranks would otherwise wait in their next collective forever.
template <class F>
int run(int& argc, char**& argv, F&& f) {
  Environment env(argc, argv);
  int rank = -1, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  try {
    Communicator comm;
    if constexpr (std::is_void_v<std::invoke_result_t<F&, Communicator&>>) {
      f(comm);
      return 0;
    } else {
      return static_cast<int>(f(comm));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fasttrain::dist: rank %d of %d failed: %s\nfasttrain::dist: ending the job (MPI_Abort)\n",
                 rank, size, e.what());
  } catch (...) {
    std::fprintf(stderr, "fasttrain::dist: rank %d of %d failed with an unknown exception\n"
                 "fasttrain::dist: ending the job (MPI_Abort)\n", rank, size);
  }
  std::fflush(stderr);
  Communicator::abort(1);
}

}  // namespace fasttrain::dist
