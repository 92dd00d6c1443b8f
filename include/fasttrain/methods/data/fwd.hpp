// fasttrain/methods/data/fwd.hpp -- the data methods, declared only: what a method names in
// its runs_before / runs_after / conflicts_with without depending on the other's header
// (the ordering traits compare types with is_same, which works on incomplete types).
#pragma once

namespace fasttrain::methods {
class MixUp;
class CutMix;
class CutOut;
class RandAugment;
class ProgressiveResizing;
class SelectiveBackprop;
class DataPruning;
class Curriculum;
class DataEchoing;
}  // namespace fasttrain::methods
