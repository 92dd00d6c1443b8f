// Compiled and linked by the package.* tests when fasttrain::dist exists; run only by hand
// (`mpiexec -n 2 fasttrain_consumer_dist --run`).
#include <fasttrain/dist/dist.hpp>

#include <string>

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "--run") return 0;
  return fasttrain::dist::run(argc, argv, [](fasttrain::dist::Communicator& comm) { return comm.size() >= 1 ? 0 : 1; });
}
