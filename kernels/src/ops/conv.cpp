// Primitive ops, conv family. STUB: registers nothing yet.
#include "op.hpp"

namespace basin {

void register_conv_ops(std::vector<const OpDef*>& table) { (void)table; }

}  // namespace basin
