// fasttrain/dist/dist.hpp -- data-parallel training over MPI (optional: needs an MPI library;
// link the CMake target fasttrain::dist). Not included by fasttrain/fasttrain.hpp.
#pragma once

#include "fasttrain/dist/data_parallel.hpp"
#include "fasttrain/dist/mpi.hpp"
