// Primitive ops, layout family. STUB: registers nothing yet.
#include "op.hpp"

namespace basin {

void register_layout_ops(std::vector<const OpDef*>& table) { (void)table; }

}  // namespace basin
