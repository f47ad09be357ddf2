// Primitive ops, binary family. STUB: registers nothing yet.
#include "op.hpp"

namespace basin {

void register_binary_ops(std::vector<const OpDef*>& table) { (void)table; }

}  // namespace basin
