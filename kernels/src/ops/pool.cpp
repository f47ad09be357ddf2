// Primitive ops, pool family. STUB: registers nothing yet.
#include "op.hpp"

namespace basin {

void register_pool_ops(std::vector<const OpDef*>& table) { (void)table; }

}  // namespace basin
