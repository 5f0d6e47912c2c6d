#include "capsnet/version.h"

#include "capsnet_commit.h" // generated at build time: cmake/commit.cmake

namespace capsnet {

const char* version() { return CAPSNET_VERSION; }

const char* build_commit() { return CAPSNET_COMMIT; }

} // namespace capsnet
