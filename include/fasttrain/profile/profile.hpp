// fasttrain/profile/profile.hpp -- where training time goes, which bottleneck binds, and the
// methods that relieve it. See docs/profiling.md.
#pragma once

#include "fasttrain/profile/diagnose.hpp"
#include "fasttrain/profile/memory.hpp"
#include "fasttrain/profile/profiler.hpp"
