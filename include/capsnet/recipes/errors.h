#pragma once

// How capsnet's errors read to a user: one line naming the kind of error (a
// data error, a checkpoint error, ...) and the library's message, which names
// the file or option and the fix.

#include <exception>
#include <string>

namespace capsnet {

/// "data error: ...", "image error: ...", "checkpoint error: ...",
/// "distributed training stopped: ..." (with how to continue from last.pt),
/// "training error: ...", "write error: ...", "invalid option: ..." (for
/// std::invalid_argument), "internal error: ..." (LibTorch's own checks,
/// without their C++ backtrace) or "error: ...".
std::string error_message(const std::exception& error);

} // namespace capsnet
