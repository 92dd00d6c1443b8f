// fasttrain/io/io.hpp -- state archives and checkpoint files.
#pragma once
#include "fasttrain/io/archive.hpp"
#include "fasttrain/io/checkpoint.hpp"
