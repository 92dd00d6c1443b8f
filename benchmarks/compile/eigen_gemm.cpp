// compile-cost reference: Eigen alone, one float GEMM (what any Eigen user pays).
#include <Eigen/Dense>
#include <iostream>

int main() {
  Eigen::MatrixXf a = Eigen::MatrixXf::Random(64, 64), b = Eigen::MatrixXf::Random(64, 64);
  Eigen::MatrixXf c = a * b;
  std::cout << c.sum() << "\n";
}
