// The table of primitive ops. Each family file registers its ops (register_<family>_ops);
// a new family adds one line here.
#include <algorithm>

#include "basin/error.hpp"
#include "op.hpp"

namespace basin {

void register_matmul_ops(std::vector<const OpDef*>& table);   // matmul.cpp
void register_unary_ops(std::vector<const OpDef*>& table);    // unary.cpp
void register_binary_ops(std::vector<const OpDef*>& table);   // binary.cpp
void register_reduce_ops(std::vector<const OpDef*>& table);   // reduce.cpp
void register_layout_ops(std::vector<const OpDef*>& table);   // layout.cpp
void register_conv_ops(std::vector<const OpDef*>& table);     // conv.cpp
void register_pool_ops(std::vector<const OpDef*>& table);     // pool.cpp
void register_gather_ops(std::vector<const OpDef*>& table);   // gather.cpp

namespace {
const std::vector<const OpDef*>& table() {
  static const std::vector<const OpDef*> t = [] {
    std::vector<const OpDef*> v;
    register_matmul_ops(v);
    register_unary_ops(v);
    register_binary_ops(v);
    register_reduce_ops(v);
    register_layout_ops(v);
    register_conv_ops(v);
    register_pool_ops(v);
    register_gather_ops(v);
    return v;
  }();
  return t;
}
}  // namespace

const OpDef* find_op(const std::string& name) {
  for (const OpDef* d : table())
    if (name == d->name) return d;
  return nullptr;
}

std::vector<std::string> op_names() {
  std::vector<std::string> names;
  for (const OpDef* d : table()) names.emplace_back(d->name);
  std::sort(names.begin(), names.end());
  return names;
}

template <>
std::unique_ptr<Op<double>> make_op<double>(const OpDef& def, const GraphNode& node,
                                            const std::vector<const GraphValue*>& inputs) {
  return def.make_double(node, inputs);
}
template <>
std::unique_ptr<Op<float>> make_op<float>(const OpDef& def, const GraphNode& node,
                                          const std::vector<const GraphValue*>& inputs) {
  return def.make_float(node, inputs);
}

void op_error(const GraphNode& node, const std::string& what, bool unimplemented) {
  throw Error(unimplemented ? ErrorCode::kUnimplemented : ErrorCode::kInvalidArgument,
              "node '" + node.name + "' (" + node.op + "): " + what);
}

}  // namespace basin
