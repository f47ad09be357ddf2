// Primitive ops, reduce family. STUB: registers nothing yet.
#include "op.hpp"

namespace basin {

void register_reduce_ops(std::vector<const OpDef*>& table) { (void)table; }

}  // namespace basin
