// compile-cost: the umbrella header and nothing else.
#include <fasttrain/fasttrain.hpp>

int main() {}
