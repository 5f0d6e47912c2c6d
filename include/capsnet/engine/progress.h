#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace capsnet {

/// "1h02m", "3m07s", "12s".
std::string format_duration(double seconds);

/// Training progress: one line rewritten in place on a terminal; on a pipe or
/// file, a plain line every tenth of an epoch and at least once a minute.
class ProgressPrinter {
 public:
  /// Prints on `out`; `terminal`: `out` is a terminal, where the line is rewritten in place.
  ProgressPrinter(std::ostream& out, bool terminal);

  /// Shows step `step` of `steps` in epoch `epoch` of `epochs` (1-based), the throughput,
  /// the epoch's running loss and accuracy (in [0, 1]) and the time left in seconds.
  void update(int64_t epoch, int64_t epochs, int64_t step, int64_t steps, double images_per_second,
              double loss, double accuracy, double eta_seconds);
  /// Ends the in-place line, if one is showing.
  void finish();

 private:
  std::ostream& out_;
  bool terminal_;
  bool line_open_ = false;
  int64_t last_tenth_ = -1;
  std::chrono::steady_clock::time_point last_print_;
};

} // namespace capsnet
