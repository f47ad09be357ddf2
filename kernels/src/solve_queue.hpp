// The batched eigen-solve queue (internal): the engine's small symmetric problems -- one Gram or
// GᵀG per checkpoint -- collected and solved several at a time by the backend's batched solver
// (docs/ARCHITECTURE.md, "The engine", pass 1).
#pragma once

#include <cstdint>
#include <vector>

#include "basin/backend.hpp"

namespace basin {

// Batched eigen-solves: matrices up to this size are solved together (a GPU's batched solvers
// win over one call each on small problems; beyond it a call per matrix is already efficient),
// holding at most kBatchedSolveBytes of them at once.
constexpr int64_t kBatchedSolveMaxDim = 1024;
constexpr uint64_t kBatchedSolveBytes = 256ull << 20;

// Collects symmetric dim×dim matrices (lower triangles) and solves them `capacity` at a time
// with Backend::symmetric_eigenvalues_batched. A ticket names a matrix's eigenvalues.
template <class T>
class SymmetricSolveQueue {
 public:
  SymmetricSolveQueue(Backend<T>& be, int64_t dim, int64_t capacity);
  int64_t capacity() const { return capacity_; }

  // Copies `sym` into the next slot (solving the batch when it is full); returns its ticket.
  int64_t push(const T* sym);
  // Solves the matrices pushed since the last flush.
  void flush();
  // Frees the slots (after the last flush): pass 2's SVD / TSQR refinements plan with the whole
  // device budget.
  void release() { slots_ = Buffer<T>(); }
  const std::vector<T>& values(int64_t ticket) const { return values_[ticket]; }
  double solve_ms(int64_t ticket) const { return ms_[ticket]; }

 private:
  Backend<T>& be_;
  int64_t dim_, capacity_, count_ = 0;
  Buffer<T> slots_;
  std::vector<std::vector<T>> values_;
  std::vector<double> ms_;
};

extern template class SymmetricSolveQueue<float>;
extern template class SymmetricSolveQueue<double>;

}  // namespace basin
