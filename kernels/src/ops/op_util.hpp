// Small helpers shared by the op families (internal).
#pragma once

#include "op.hpp"

namespace basin {

// dst += src for tensors of the same shape and R under the broadcast contract on E:
// same E → one axpy; dst.E == 1 < src.E → summed over examples; src.E == 1 < dst.E → added to
// every example.
template <class T>
void add_into(Backend<T>& be, const Tensor<T>& src, const Tensor<T>& dst);

// A zero-filled scratch tensor like `like` with the given E and R.
template <class T>
Tensor<T> tensor_in(Buffer<T>& storage, Backend<T>& be, int64_t E, int64_t R, const Shape& shape);

// The largest E and R among tensors (null ones skipped).
template <class T>
int64_t max_examples(std::initializer_list<const Tensor<T>*> ts) {
  int64_t e = 1;
  for (const Tensor<T>* t : ts)
    if (t != nullptr && t->data != nullptr && t->E > e) e = t->E;
  return e;
}
template <class T>
int64_t max_rows(std::initializer_list<const Tensor<T>*> ts) {
  int64_t r = 1;
  for (const Tensor<T>* t : ts)
    if (t != nullptr && t->data != nullptr && t->R > r) r = t->R;
  return r;
}

}  // namespace basin
