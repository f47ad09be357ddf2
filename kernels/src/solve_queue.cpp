// The batched eigen-solve queue (solve_queue.hpp).
#include "solve_queue.hpp"

#include <algorithm>
#include <chrono>

namespace basin {
namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

template <class T>
SymmetricSolveQueue<T>::SymmetricSolveQueue(Backend<T>& be, int64_t dim, int64_t capacity)
    : be_(be), dim_(dim), capacity_(std::max<int64_t>(capacity, 1)) {}

template <class T>
int64_t SymmetricSolveQueue<T>::push(const T* sym) {
  const size_t size = static_cast<size_t>(dim_ * dim_);
  if (slots_.size() == 0) slots_ = Buffer<T>(be_, size * static_cast<size_t>(capacity_));
  be_.copy(slots_.get() + static_cast<size_t>(count_) * size, sym, size);
  const int64_t ticket = static_cast<int64_t>(values_.size());
  values_.emplace_back();
  ms_.push_back(0);
  if (++count_ == capacity_) flush();
  return ticket;
}

template <class T>
void SymmetricSolveQueue<T>::flush() {
  if (count_ == 0) return;
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<T> all = be_.symmetric_eigenvalues_batched(count_, dim_, slots_.get());
  be_.synchronize();
  const double each_ms = ms_since(t0) / double(count_);
  const int64_t first = static_cast<int64_t>(values_.size()) - count_;
  for (int64_t j = 0; j < count_; ++j) {
    values_[first + j].assign(all.begin() + j * dim_, all.begin() + (j + 1) * dim_);
    ms_[first + j] = each_ms;
  }
  count_ = 0;
}

template class SymmetricSolveQueue<float>;
template class SymmetricSolveQueue<double>;

}  // namespace basin
